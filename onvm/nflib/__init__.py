"""An NF process (python -m onvm.nflib.run): the runner, the NF's context and its side of the
NF door.  Imports only onvm.common; never the notebook-side client."""
