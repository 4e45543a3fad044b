"""Import what every forked rank of these tests uses once, in the test process: forked ranks
share it instead of each paying for the import again (seconds each on the 2-core machine)."""

import importlib

for _module in ("megatron.core.models.gpt", "megatron.core.distributed",
                "megatron.core.optimizer", "megatron.core.pipeline_parallel",
                "mbridge_models.gpt_provider", "mbridge_peft"):
    importlib.import_module(_module)
