"""Training loops with progress bars, shared by the notebooks and the graded training cases."""
import math

import torch

from dlkit.progress import tqdm


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


def fit(model, batch_loss, n_rows: int, *, steps: int, batch_size: int, lr: float,
        warmup: int, seed: int = 0, device="cpu", progress: bool = True, on_step=None,
        every=None, on_every=None) -> list[float]:
    """The course's training loop: AdamW (weight decay 0.01), warm-up then cosine decay,
    gradients clipped to norm 1; returns the loss per step.

    A fixed amount of work: `steps` batches of `batch_size` row indices into range(n_rows),
    drawn with `seed`; `batch_loss(index)` returns the loss of those rows (the model on
    `device`). on_step(step, total, loss) is called after every step (the grader reports
    progress with it); on_every(step) every `every` steps, in eval mode (the notebook samples).
    Leaves the model in eval mode."""
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, steps, warmup))
    sampler = batches(n_rows, batch_size, torch.Generator().manual_seed(seed))
    losses = []
    bar = tqdm(range(steps), desc="training", disable=not progress, mininterval=1.0)
    for step in bar:
        loss = batch_loss(next(sampler))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if on_step is not None:
            on_step(step + 1, steps, losses[-1])
        if every and on_every is not None and (step + 1) % every == 0:
            model.eval()
            on_every(step + 1)
            model.train()
    model.eval()
    return losses


def train_seq2seq(model, input_ids, labels, *, steps: int, batch_size: int = 128,
                  lr: float = 1e-3, warmup: int = 100, seed: int = 0, device="cpu",
                  progress: bool = True, on_step=None) -> list[float]:
    """Train `model(input_ids, labels) -> (logits, loss)` with `fit`; returns the loss per
    step. on_step(step, total, loss): called after every optimisation step."""
    def batch_loss(index):
        _, loss = model(input_ids[index].to(device), labels[index].to(device))
        return loss
    return fit(model, batch_loss, len(input_ids), steps=steps, batch_size=batch_size, lr=lr,
               warmup=warmup, seed=seed, device=device, progress=progress, on_step=on_step)


@torch.no_grad()
def predict_in_batches(predict, inputs: torch.Tensor, batch_size: int = 512, device="cpu"):
    """Apply `predict(batch) -> tensor` to `inputs` in chunks; results come back on the CPU."""
    return torch.cat([predict(inputs[i:i + batch_size].to(device)).cpu()
                      for i in range(0, len(inputs), batch_size)])


def exact_match(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows where every token matches."""
    return predictions.eq(labels).all(dim=1).float().mean().item()
