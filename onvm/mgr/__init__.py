"""The manager process (python -m onvm.mgr.daemon): the DPDK primary's control loop, its
control socket, the NF door and the flow director.  Imports only onvm.common."""
