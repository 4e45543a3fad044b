"""`mbridge convert import|export|list`: Hugging Face <-> Megatron checkpoints (AutoBridge).

Stdlib-only at import; each command imports what it converts with.
"""

from __future__ import annotations

import argparse
import sys


def add_commands(commands) -> None:
    convert = commands.add_parser("convert", help="Hugging Face <-> Megatron checkpoints")
    actions = convert.add_subparsers(dest="convert_command", metavar="ACTION")
    imp = actions.add_parser("import", help="a local Hugging Face folder -> a Megatron checkpoint "
                                            "(keeps its config and tokenizer files)")
    imp.add_argument("hf_dir", metavar="HF_DIR")
    imp.add_argument("checkpoint", metavar="CKPT")
    imp.add_argument("--dtype", default=None, help="parameter dtype (default float32)")
    imp.set_defaults(handler=_import)
    exp = actions.add_parser("export", help="a Megatron checkpoint -> a Hugging Face folder "
                                            "(from the checkpoint alone)")
    exp.add_argument("checkpoint", metavar="CKPT")
    exp.add_argument("hf_dir", metavar="HF_DIR")
    exp.add_argument("--hf-config", default=None, metavar="DIR",
                     help="a Hugging Face folder to take the config / tokenizer from (only for "
                          "checkpoints saved without hf_assets)")
    exp.add_argument("--no-merge-adapters", action="store_true",
                     help="export the base weights of a PEFT checkpoint, not base + adapters")
    exp.add_argument("--max-shard-size", default="2GB")
    exp.set_defaults(handler=_export)
    listing = actions.add_parser("list", help="the Hugging Face model types mbridge converts")
    listing.set_defaults(handler=_list)
    convert.set_defaults(handler=lambda args: _usage(convert))


def _usage(parser) -> int:
    parser.print_help()
    return 0


def _import(args: argparse.Namespace) -> int:
    def run():
        from mbridge_train.auto_bridge import AutoBridge

        folder = AutoBridge.import_ckpt(args.hf_dir, args.checkpoint, torch_dtype=args.dtype)
        print(f"mbridge convert: wrote {folder}")

    return _guarded(run)


def _export(args: argparse.Namespace) -> int:
    def run():
        from mbridge_train.auto_bridge import AutoBridge

        bridge = AutoBridge.from_hf_pretrained(args.hf_config) if args.hf_config else AutoBridge
        folder = bridge.export_ckpt(args.checkpoint, args.hf_dir,
                                    merge_adapter_weights=not args.no_merge_adapters,
                                    max_shard_size=args.max_shard_size)
        print(f"mbridge convert: wrote {folder}")

    return _guarded(run)


def _list(args: argparse.Namespace) -> int:
    from mbridge_models.conversion import get_architecture, list_supported_models

    for model_type in list_supported_models():
        print(f"{model_type:<12} {get_architecture(model_type).hf_architecture}")
    return 0


def _guarded(run) -> int:
    """Bad input is one line on stderr and exit status 2, never a traceback."""
    from mbridge.cli import _quiet_megatron_import_warnings

    _quiet_megatron_import_warnings()
    from mbridge_config.errors import ConfigError
    from mbridge_models.conversion.errors import ConversionError
    from mbridge_train.checkpointing import CheckpointError

    try:
        run()
    except (ConversionError, CheckpointError, ConfigError) as error:
        print(f"mbridge convert: error: {error}", file=sys.stderr)
        return 2
    return 0
