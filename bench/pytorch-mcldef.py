#!/usr/bin/python3
"""The published MCLDef job (SPEC §2) in plain PyTorch, for `npm run bench:pytorch-defend`.

Reads the arrays that bench/pytorch-defend.ts exported (the same clean subset, test split and
weights that `mcldef defend` uses), inverts the trigger, purifies, and prints one JSON line:
BA / ASR before and after and the seconds of every stage. Written from the specification, as
the side-by-side reference for our engine's speed and for the method's results on this data.
"""
import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from pytorch_wrn import WRN


MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
STD = torch.tensor([0.2023, 0.1994, 0.2010]).view(1, 3, 1, 1)


def norm(x):
    return (x - MEAN) / STD


def load(folder, name, shape):
    pixels = np.fromfile(os.path.join(folder, f"{name}.u8"), dtype=np.uint8).reshape(shape)
    labels = np.fromfile(os.path.join(folder, f"{name}-labels.i64"), dtype=np.int64)
    return torch.from_numpy(pixels.copy()), torch.from_numpy(labels.copy())


def grid_trigger(images_u8):
    """The authors' 3×3 grid in the bottom-right corner, all channels (SPEC §4)."""
    out = images_u8.clone()
    rows = {-1: (255, 0, 255), -2: (0, 255, 0), -3: (255, 0, 0)}
    for row, values in rows.items():
        for offset, value in zip((-1, -2, -3), values):
            out[:, :, row, offset] = value
    return out


@torch.no_grad()
def accuracy(model, images_u8, labels, batch=500, target=None):
    model.eval()
    hits = 0
    for start in range(0, len(labels), batch):
        logits = model(norm(images_u8[start : start + batch].float() / 255))
        wanted = labels[start : start + batch] if target is None else torch.full_like(labels[start : start + batch], target)
        hits += (logits.argmax(1) == wanted).sum().item()
    return 100.0 * hits / len(labels)


def measure(model, test_u8, test_labels, target):
    others = test_labels != target
    return {
        "ba": accuracy(model, test_u8, test_labels),
        "asr": accuracy(model, grid_trigger(test_u8[others]), test_labels[others], target=target),
    }


def batches(count, batch, generator):
    order = torch.randperm(count, generator=generator)
    for start in range(0, count - count % batch, batch):  # drop_last, as the published loader
        yield order[start : start + batch]


def size_surrogate(values):
    return torch.tanh(values / 10) / (2 - 1e-7) + 0.5


def invert(model, clean, target, passes, patience, generator):
    """The published pixel-pattern inversion (SPEC §2 stage 1)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    shape = clean.shape[1:]
    positive = torch.rand(shape, generator=generator).requires_grad_(True)
    negative = torch.rand(shape, generator=generator).requires_grad_(True)
    optimizer = torch.optim.Adam([positive, negative], lr=0.1, betas=(0.5, 0.9))
    cost, above, below = 1e-3, 0, 0
    best_reg, best_size, best = float("inf"), float("inf"), None
    since, done = 0, 0
    threshold = 1 / 255
    for _ in range(passes):
        hits, seen, regs = 0, 0, []
        for index in batches(len(clean), 64, generator):
            x = clean[index]
            used_pos, used_neg = positive.clamp(0, 1), negative.clamp(0, 1)
            logits = model(norm((x + used_pos - used_neg).clamp(0, 1)))
            reg = size_surrogate(positive).amax(0).sum() + size_surrogate(negative).amax(0).sum()
            loss = F.cross_entropy(logits, torch.full((len(x),), target)) + cost * reg
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            hits += (logits.argmax(1) == target).sum().item()
            seen += len(x)
            regs.append(reg.item())
        done += 1
        accuracy_ = hits / seen
        mean_reg = float(np.mean(regs))
        with torch.no_grad():
            pos = used_pos.detach().masked_fill(used_pos.detach() < threshold, 0)
            neg = used_neg.detach().masked_fill(used_neg.detach() < threshold, 0)
            delta = pos - neg
            size = int((delta.abs().sum(0) > 0).sum().item())
            if accuracy_ >= 0.9 and mean_reg < best_reg and size < best_size:
                best_reg, best_size, best = mean_reg, size, delta.clone()
                positive.copy_(pos)
                negative.copy_(neg)
                since = 0
            else:
                since += 1
        if accuracy_ >= 0.9:
            above, below = above + 1, 0
        else:
            above, below = 0, below + 1
        if above >= 10:
            cost, above = cost * 1.5, 0
        elif below >= 10:
            cost, below = cost / 1.5**1.5, 0
        if best is not None and since >= patience:
            break
    for p in model.parameters():
        p.requires_grad_(True)
    return best, best_size, done


def purify(model, clean, delta, generator, monitor, epochs):
    """The published model-contrastive fine-tuning (SPEC §2 stage 2)."""
    frozen = WRN()
    frozen.load_state_dict(model.state_dict())
    frozen.eval()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    monitor_seconds = 0.0
    for epoch in range(epochs):
        for group in optimizer.param_groups:
            group["lr"] = 0.1 if epoch < 1 else 0.01 if epoch < 10 else 0.001
        model.train()
        for index in batches(len(clean), 64, generator):
            x = clean[index]
            stamped = (x + delta).clamp(0, 1)
            anchor = model.features(norm(stamped))
            with torch.no_grad():
                positive = frozen.features(norm(x))
                negative = frozen.features(norm(stamped))
            logits = torch.stack([F.cosine_similarity(anchor, positive, -1), F.cosine_similarity(anchor, negative, -1)], 1) / 0.5
            loss = F.cross_entropy(logits, torch.zeros(len(x), dtype=torch.long))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if monitor is not None:
            started = time.perf_counter()
            measure(model, *monitor)
            monitor_seconds += time.perf_counter() - started
    return monitor_seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=int, default=5)
    parser.add_argument("--passes", type=int, default=100)
    parser.add_argument("--patience", type=float, default=float("inf"))
    parser.add_argument("--monitor", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    meta = json.load(open(os.path.join(args.folder, "meta.json")))
    clean_u8, _ = load(args.folder, "clean", meta["clean"])
    test_u8, test_labels = load(args.folder, "test", meta["test"])
    model = WRN()
    checkpoint = torch.load(meta["weights"], map_location="cpu")
    state = checkpoint.get("state_dict", checkpoint)
    model.load_state_dict({key.removeprefix("module."): value for key, value in state.items()})
    clean = clean_u8.float() / 255
    load_seconds = time.perf_counter() - started
    generator = torch.Generator().manual_seed(args.seed)
    t = time.perf_counter()
    before = measure(model, test_u8, test_labels, args.target)
    evaluation = time.perf_counter() - t
    t = time.perf_counter()
    delta, size, passes = invert(model, clean, args.target, args.passes, args.patience, generator)
    inversion = time.perf_counter() - t
    take = torch.randperm(len(test_labels), generator=torch.Generator().manual_seed(1))[: args.monitor]
    monitor = (test_u8[take], test_labels[take], args.target) if args.monitor > 0 else None
    t = time.perf_counter()
    monitor_seconds = purify(model, clean, delta, generator, monitor, args.epochs)
    purification = time.perf_counter() - t
    t = time.perf_counter()
    after = measure(model, test_u8, test_labels, args.target)
    evaluation += time.perf_counter() - t
    seconds = {
        "load": load_seconds,
        "evaluation": evaluation,
        "inversion": inversion,
        "purification": purification,
        "purification_monitor": monitor_seconds,
        "total": time.perf_counter() - started,
    }
    print(json.dumps({"before": before, "after": after, "trigger": {"size": size, "passes": passes}, "seconds": seconds}))


if __name__ == "__main__":
    main()
