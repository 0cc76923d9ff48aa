"""What runs inside an NF process."""
