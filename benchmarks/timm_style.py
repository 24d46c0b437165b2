"""What a user would otherwise run: a timm validate.py-style loop, as the reference for speed.

torchvision transforms (Resize, CenterCrop, ToTensor, Normalize) on PIL images in a torch
DataLoader with one worker process per core, the same model (built by the suite's own
models.build_model from the same weights) and the same number of inference threads.
Prints images/s and top1/top5 so that a wrong loop shows up as a wrong accuracy.

    python benchmarks/timm_style.py --family efficientnet_lite --model timm-efficientnet_lite0 \
        --dataset ../shared/data/imagenet-sample
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", required=True, help="baseline file name without .yaml")
    parser.add_argument("--model", required=True, help="model key in that file")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--weights-dir", default="weights")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="DataLoader workers")
    parser.add_argument("--channels-last", action="store_true",
                        help="model and batches in channels_last (timm validate.py --channels-last)")
    args = parser.parse_args()
    start = time.perf_counter()

    import torch
    from PIL import Image
    from torchvision import transforms as T

    from pytest_vaccbench.baselines import load_family
    from pytest_vaccbench.dataset import limit, resolve
    from pytest_vaccbench.models import build_model
    from pytest_vaccbench.weights import find_weights

    entry = load_family(ROOT / "baselines" / f"{args.family}.yaml").models[args.model]
    spec = entry.preprocess
    data = limit(resolve(args.dataset), args.limit)
    size = spec.resize if spec.resize_mode == "short-side" else (spec.resize, spec.resize)
    mode = T.InterpolationMode(spec.interpolation)
    transform = T.Compose([T.Resize(size, interpolation=mode), T.CenterCrop(spec.crop),
                           T.ToTensor(), T.Normalize(spec.mean, spec.std)])

    class Images(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(data.samples)

        def __getitem__(self, i: int):
            sample = data.samples[i]
            with Image.open(sample.path) as img:
                return transform(img.convert("RGB")), sample.label

    torch.set_num_threads(args.threads)
    model = build_model(entry, find_weights(entry, Path(args.weights_dir).resolve()).path)
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    loader = torch.utils.data.DataLoader(Images(), batch_size=args.batch_size, shuffle=False,
                                         num_workers=args.workers)
    correct1 = correct5 = 0
    with torch.inference_mode():
        for images, labels in loader:
            top5 = model(images.contiguous(memory_format=layout)).topk(5, dim=1).indices
            correct1 += (top5[:, 0] == labels).sum().item()
            correct5 += (top5 == labels[:, None]).any(dim=1).sum().item()
    seconds = time.perf_counter() - start
    n = len(data.samples)
    print(f"timm-style: {n} images in {seconds:.2f} s ({n / seconds:.1f} images/s after "
          f"imports), top1 {100 * correct1 / n:.3f} top5 {100 * correct5 / n:.3f}")


if __name__ == "__main__":
    main()
