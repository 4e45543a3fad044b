"""`megatron.bridge.models.conversion`: Hugging Face <-> Megatron conversion."""


def __getattr__(name: str):
    if name == "AutoBridge":
        from mbridge_train.auto_bridge import AutoBridge

        return AutoBridge
    if name == "weights_verification_table":
        from mbridge_train.verification import weights_verification_table

        return weights_verification_table
    raise AttributeError(f"module 'mbridge.models.conversion' has no attribute {name!r}")
