"""`mbridge.training`: the Megatron Bridge training API (configs now; entry points to come)."""
