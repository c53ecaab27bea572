"""The team's own training script, outside edgebench: train the ResNet-18-style network on the shapes data, save a
checkpoint, and make an int8 ONNX with ONNX Runtime's own quantizer (the "other tool's artifact").

It reads the data size, the network width and the normalisation from the experiment file, so the checkpoint
expects exactly the images edgebench will feed it::

    python train.py                      # experiment.yaml beside this file, 6 epochs
    python train.py --epochs 1 --experiment small.yaml

Writes, beside the experiment file: checkpoints/resnet18_shapes.pt (a checkpoint dict: {"model": state_dict,
"epoch", "test_accuracy"}), checkpoints/resnet18_fp32.onnx and checkpoints/resnet18_ort_int8.onnx.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from resnet import build_resnet18
from shapes import CLASSES, load
from torch import nn


def preprocess(images: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """uint8 NHWC to float32 NCHW in [0, 1], normalised per channel: what the experiment's ``preprocess`` declares."""
    x = images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    return (x - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model(torch.from_numpy(x[i : i + 256])).argmax(1) for i in range(0, len(x), 256)])
    return float((predicted.numpy() == y).mean())


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, lr: float) -> None:
    """Adam with a cosine learning rate to zero (the last epochs settle BatchNorm's statistics), batches of 64."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * ((len(x) + 63) // 64))
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x)).numpy()
        losses = []
        for i in range(0, len(x), 64):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(torch.from_numpy(x[order[i : i + 64]])),
                                               torch.from_numpy(y[order[i : i + 64]]))
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        print(f"epoch {epoch + 1}/{epochs}: training loss {np.mean(losses):.3f}", flush=True)


class CalibrationImages:
    """ONNX Runtime's calibration data reader: one training image per call."""

    def __init__(self, x: np.ndarray, input_name: str) -> None:
        self.batches = iter([{input_name: x[i : i + 1]} for i in range(len(x))])

    def get_next(self) -> dict | None:
        return next(self.batches, None)


def ort_int8(model: nn.Module, x_calibration: np.ndarray, directory: Path) -> tuple[Path, Path]:
    """The fp32 ONNX of the trained network, and its static int8 (QDQ, per-channel) made by ONNX Runtime's quantizer."""
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static

    fp32, prepared, int8 = directory / "resnet18_fp32.onnx", directory / "prepared.onnx", directory / "resnet18_ort_int8.onnx"
    example = torch.from_numpy(x_calibration[:1])
    torch.onnx.export(model.eval(), (example,), fp32, dynamo=False, input_names=["images"], output_names=["logits"],
                      dynamic_axes={"images": {0: "n"}, "logits": {0: "n"}})
    quant_pre_process(str(fp32), str(prepared))  # shape inference and BatchNorm folding, as ORT recommends
    quantize_static(str(prepared), str(int8), CalibrationImages(x_calibration, "images"), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    prepared.unlink()
    return fp32, int8


def ort_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    predicted = np.concatenate([session.run(None, {"images": x[i : i + 256]})[0].argmax(1) for i in range(0, len(x), 256)])
    return float((predicted == y).mean())


def main() -> None:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", type=Path, default=here / "experiment.yaml",
                        help="the experiment whose dataset kwargs, model width and normalisation to train for")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=0.002)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    exp = yaml.safe_load(args.experiment.read_text())
    data_kwargs, normalize = exp["dataset"].get("kwargs", {}), exp["dataset"]["preprocess"]["normalize"]
    checkpoint = args.experiment.resolve().parent / exp["model"]["weights"]  # relative: from the experiment's folder
    checkpoint.parent.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    splits = {name: (preprocess(x, normalize["mean"], normalize["std"]), y) for name, (x, y) in load(**data_kwargs).items()}
    (x_train, y_train), (x_test, y_test) = splits["train"], splits["test"]
    torch.manual_seed(args.seed)  # before the model: its initial weights too (else every run trains another one)
    model = build_resnet18(num_classes=len(CLASSES), in_channels=3, **exp["model"].get("kwargs", {}))
    train(model, x_train, y_train, args.epochs, args.lr)
    test_accuracy = accuracy(model, x_test, y_test)
    torch.save({"model": model.state_dict(), "epoch": args.epochs, "test_accuracy": test_accuracy}, checkpoint)
    print(f"trained {args.epochs} epochs on {len(x_train)} images in {time.perf_counter() - start:.0f} s; "
          f"test accuracy {test_accuracy:.3f} (PyTorch); checkpoint {checkpoint}")

    fp32, int8 = ort_int8(model, x_train[:128], checkpoint.parent)
    print(f"ONNX Runtime int8: {int8} (test accuracy {ort_accuracy(int8, x_test, y_test):.3f}; "
          f"fp32 ONNX {ort_accuracy(fp32, x_test, y_test):.3f})")


if __name__ == "__main__":
    main()
