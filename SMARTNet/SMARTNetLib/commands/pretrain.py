"""``smartnet pretrain``: self-supervised pretraining of SMART-Net on unlabeled head CTs (Models Genesis, TransVW)."""

from __future__ import annotations

import argparse
from pathlib import Path

from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.contracts.events import EventSink

HELP = ("pretrain a SMART-Net encoder on unlabeled CTs: restoring distorted slices (Models Genesis) or, with "
        "--method transvw, telling discovered visual words apart while restoring them (TransVW)")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True,
                        help="a folder (every NIfTI/NRRD/MHA file and DICOM series under it) or a MONAI datalist "
                             "(its training and validation images; labels are ignored)")
    parser.add_argument("--output", "-o", type=Path, required=True,
                        help="model folder to write (model.json + model.pt; checkpoints/ for --resume)")
    parser.add_argument("--architecture", choices=("default", "paper", "tiny"), default="default",
                        help="network size (default: default)")
    parser.add_argument("--image-size", type=int, help="network input size in px (default: the architecture's)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs (default: 10)")
    parser.add_argument("--steps-per-epoch", type=int,
                        help="batches per epoch (default: 8 slices per volume / batch size)")
    parser.add_argument("--batch-size", type=int, default=8, help="slices per step (default: 8)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate (default: 1e-3)")
    parser.add_argument("--loss", choices=("l1", "mse"), default="l1",
                        help="restoration loss: l1 (SMART-Net's reconstruction loss) or mse (Models Genesis')")
    parser.add_argument("--method", choices=("genesis", "transvw"), default="genesis",
                        help="genesis: restore distorted slices (Models Genesis, default); transvw: also classify "
                             "visual words discovered in the scans (TransVW)")
    parser.add_argument("--words", type=int, default=32, help="transvw: visual words (classes; default 32)")
    parser.add_argument("--instances", type=int, default=8,
                        help="transvw: heads each word is taken from, the reference and the most similar (default 8)")
    parser.add_argument("--word-weight", type=float, default=1.0,
                        help="transvw: weight of the word classification loss (default 1)")
    parser.add_argument("--device", default="auto", help="auto (GPU if available), cpu or cuda")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output from its last checkpoint")
    parser.add_argument("--name", help="model name in the card (default: the output folder's name)")


def run(args: argparse.Namespace, sink: EventSink) -> dict:
    for key in ("epochs", "batch_size", "steps_per_epoch", "image_size", "words", "instances"):
        value = getattr(args, key)
        if value is not None and value < 1:
            raise SmartNetError(f"--{key.replace('_', '-')} must be positive")
    if args.image_size is not None and args.image_size % 32:
        raise SmartNetError("--image-size must be a multiple of 32 (the encoder's stride)")
    if args.lr <= 0:
        raise SmartNetError("--lr must be positive")

    from SMARTNetLib.training.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(data=args.data, output=args.output, architecture=args.architecture,
                         image_size=args.image_size, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                         batch_size=args.batch_size, lr=args.lr, loss=args.loss, device=args.device, seed=args.seed,
                         resume=args.resume, name=args.name, method=args.method, words=args.words,
                         instances=args.instances, word_weight=args.word_weight)
    return pretrain(cfg, sink)


def summarize(result: dict) -> str:
    metrics = result.get("metrics") or {}
    loss = (f" (restoration loss {metrics['restoration_loss']:.4f}, distorted input {metrics['identity_loss']:.4f}"
            + (f", word accuracy {metrics['word_accuracy']:.2f}" if "word_accuracy" in metrics else "") + ")"
            if "restoration_loss" in metrics else "")
    return (f"pretrained model {result['name']} written to {result['model_dir']}{loss} in {result['seconds']:.0f} s "
            f"on {result['device']}; fine-tune it with: smartnet train --base-model {result['model_dir']} ...")
