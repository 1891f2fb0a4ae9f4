"""The add/subtract data set: every expression a (+|-) b with integers |a|, |b| <= 50.

Token format (as in the source homework): a sign token and zero-padded digits per number,
"BOS POSITIVE 04 subtract NEGATIVE 15 EOS" -> "BOS POSITIVE 019 EOS". Operands have two
digits; answers have three, since 50 + 50 = 100 does not fit in two.
"""
import torch

LIMIT = 50
OPERATORS = ("add", "subtract")


def number_text(n: int, digits: int) -> str:
    """-7 -> 'NEGATIVE 07'; zero counts as POSITIVE."""
    return f"{'NEGATIVE' if n < 0 else 'POSITIVE'} {abs(n):0{digits}d}"


def expression_text(a: int, op: str, b: int) -> str:
    return f"BOS {number_text(a, 2)} {op} {number_text(b, 2)} EOS"


def answer_text(a: int, op: str, b: int) -> str:
    return f"BOS {number_text(a + b if op == 'add' else a - b, 3)} EOS"


def all_problems() -> list[tuple[int, str, int]]:
    """All 101 * 2 * 101 = 20402 problems, in a fixed order."""
    span = range(-LIMIT, LIMIT + 1)
    return [(a, op, b) for a in span for op in OPERATORS for b in span]


def split_problems(held_out: float = 0.1, seed: int = 0):
    """A deterministic (train, held-out) split of `all_problems()`."""
    problems = all_problems()
    order = torch.randperm(len(problems), generator=torch.Generator().manual_seed(seed)).tolist()
    n_test = int(round(held_out * len(problems)))
    return [problems[i] for i in order[n_test:]], [problems[i] for i in order[:n_test]]


def encode_problems(problems, tokenize) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (input_ids (N, 9), labels (N, 5)) as int64.

    `tokenize(text) -> list[int]` is your `preprocess_input_sequence` with its dictionary.
    Labels are the answer without its BOS: the decoder starts from EOS instead.
    """
    inputs = [tokenize(expression_text(*p)) for p in problems]
    labels = [tokenize(answer_text(*p))[1:] for p in problems]
    return torch.tensor(inputs, dtype=torch.long), torch.tensor(labels, dtype=torch.long)


def parse_expression(tokens: list[str]) -> tuple[int, str, int]:
    """Inverse of `expression_text` on a token list: ['BOS', 'POSITIVE', '0', '4', ...]."""
    words = " ".join(tokens).replace("BOS", "").replace("EOS", "").split()
    numbers, op, current = [], None, None
    for word in words:
        if word in ("POSITIVE", "NEGATIVE"):
            current = [1 if word == "POSITIVE" else -1, ""]
            numbers.append(current)
        elif word in OPERATORS:
            op = word
        else:
            current[1] += word
    (sa, a), (sb, b) = numbers
    return sa * int(a), op, sb * int(b)
