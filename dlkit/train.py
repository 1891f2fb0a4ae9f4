"""Training loops with progress bars, shared by the notebooks and the graded training cases."""
import math

import torch
from tqdm.auto import tqdm


def batches(n: int, batch_size: int, generator: torch.Generator):
    """Endless shuffled index batches over range(n), reshuffled every epoch."""
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start:start + batch_size]


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Learning-rate multiplier: linear warm-up, then cosine decay to 10%."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def train_seq2seq(model, input_ids, labels, *, steps: int, batch_size: int = 128,
                  lr: float = 1e-3, warmup: int = 100, seed: int = 0, device="cpu",
                  progress: bool = True, on_step=None) -> list[float]:
    """Train `model(input_ids, labels) -> (logits, loss)` with AdamW; returns the loss per step.

    A fixed amount of work: `steps` batches of `batch_size` rows, drawn with `seed`.
    on_step(step, total, loss): called after every optimisation step (the grader reports
    how far training got with it)."""
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, steps, warmup))
    sampler = batches(len(input_ids), batch_size, torch.Generator().manual_seed(seed))
    losses = []
    bar = tqdm(range(steps), desc="training", disable=not progress, mininterval=1.0)
    for step in bar:
        index = next(sampler)
        _, loss = model(input_ids[index].to(device), labels[index].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if on_step is not None:
            on_step(step + 1, steps, losses[-1])
    model.eval()
    return losses


@torch.no_grad()
def predict_in_batches(predict, inputs: torch.Tensor, batch_size: int = 512, device="cpu"):
    """Apply `predict(batch) -> tensor` to `inputs` in chunks; results come back on the CPU."""
    return torch.cat([predict(inputs[i:i + batch_size].to(device)).cpu()
                      for i in range(0, len(inputs), batch_size)])


def exact_match(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows where every token matches."""
    return predictions.eq(labels).all(dim=1).float().mean().item()
