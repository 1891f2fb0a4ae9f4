# Generated from solutions/bert.py by `python -m grader skeletons`.
# Fill in every TODO; keep names, signatures and attribute names as they are.
"""BERT: a Transformer encoder from scratch, masked-LM pretraining, and a real pretrained BERT.

Parts 1 and 2 build BERT from its pieces and pretrain it with the masked-language-model
task: hide 15% of the tokens and train the model to recover them from both sides' context.
Part 3 takes a real pretrained BERT (the offline MiniLM: 6 layers, 384 wide, BERT's
WordPiece vocabulary), freezes it, and trains a GRU on top of its token features to
classify text. Part 4 looks inside the pretrained model's attention.

You write:

1. `scaled_dot_product`, `MultiHeadAttention`, `TransformerBlock`, `BertModel`;
2. `mask_inputs` and `pretraining_step` (masked-LM pretraining);
3. `BERTGRUSentiment`, `binary_accuracy`, `train`, `evaluate`, `predict_sentiment`;
4. `bert_attention`: every layer's and head's attention, computed from a pretrained BERT's
   own weights.

`PositionalEncoding` and `epoch_time` are given.

Conventions used everywhere in this file:
- Token ids are int64 `(B, T)`; embeddings are `(B, T, E)`; attention weights are
  `(B, heads, T_query, T_key)` and each row sums to 1.
- A padding mask is `(B, T)` with **1 (or True) = this key is hidden** (padding): a hidden
  key gets weight exactly 0 in every query's row. Every row must keep at least one key.
- Dropout is active in `model.train()` and off in `model.eval()` (attention dropout too).
- Labels for the masked-LM loss are the original ids at the selected positions and -100
  (PyTorch's `ignore_index`) everywhere else, padding included.

Run `make grade A=bert` to score this file; `notebooks/bert.ipynb` walks through it.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

IGNORE_INDEX = -100  # nn.CrossEntropyLoss's default ignore_index

# ---------------------------------------------------------------------------------------
# Part 1. BERT from its pieces
# ---------------------------------------------------------------------------------------


def scaled_dot_product(q, k, v, attn_drop_rate: float = 0.1, mask=None):
    """Scaled dot-product attention with a key padding mask.

    q, k, v: (B, heads, T, d). mask: None or (B, T), 1 (True) where a key is hidden.
    logits = q k^T / sqrt(d); hidden key columns get -inf; softmax over the keys; dropout
    with probability `attn_drop_rate` on the weights (pass 0.0 to switch it off); then the
    weights times v. Returns (values (B, heads, T, d), attention (B, heads, T, T)); the
    attention returned is the one after dropout.

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): `torch.nn.functional.scaled_dot_product_attention`.
    """
    # TODO: scores (B, heads, T, T) scaled by 1/sqrt(d); a masked key hides its whole column,
    #       for every query; normalise over the keys, drop weights out at attn_drop_rate, then
    #       mix the values.
    raise NotImplementedError("scaled_dot_product: not implemented yet")
    return values, attention


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention with one fused input projection.

    `qkv_proj = nn.Linear(E, 3E)`: its output, viewed as (B, T, heads, 3 * head_dim), holds
    each head's q, k and v side by side (in that order), so after permuting to
    (B, heads, T, 3 * head_dim) they come out of `.chunk(3, dim=-1)`. `o_proj = nn.Linear(E,
    E)` mixes the merged heads. `_reset_parameters`: Xavier-uniform weights, zero biases.
    forward(x (B, T, E), mask (B, T) or None) -> (B, T, E). Attention dropout
    (`attn_drop_rate`) only in training mode.
    """

    def __init__(self, embed_dim: int, n_heads: int, attn_drop_rate: float):
        super().__init__()
        if embed_dim % n_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by n_heads {n_heads}")
        self.embed_dim, self.n_heads = embed_dim, n_heads
        self.head_dim = embed_dim // n_heads
        self.attn_drop_rate = attn_drop_rate
        # TODO: one fused projection E -> 3E for queries, keys and values and one output
        #       projection E -> E (names in the docstring), then the initialisation.
        raise NotImplementedError("MultiHeadAttention.__init__: not implemented yet")

    def _reset_parameters(self):
        # TODO: Xavier-uniform weights and zero biases, for both projections.
        raise NotImplementedError("MultiHeadAttention._reset_parameters: not implemented yet")

    def forward(self, x, mask=None):
        """See the class docstring.

        Off limits here (library shortcuts that would do this part's work; using one costs
        its cases): `torch.nn.MultiheadAttention`,
        `torch.nn.functional.multi_head_attention_forward`.
        """
        B, T, _ = x.shape
        # TODO: the fused projection is (B, T, heads, 3 * head_dim), each head's block holding
        #       its q, k and v in that order; attend per head (dropout only while training),
        #       bring the heads back to (B, T, E), then project.
        raise NotImplementedError("MultiHeadAttention.forward: not implemented yet")
        return out


class TransformerBlock(nn.Module):
    """A post-LN encoder block; tuple in, tuple out, so blocks chain in nn.Sequential.

    forward((x (B, T, E), mask)) -> (out (B, T, E), mask), in this order:
    h = LayerNorm(x + Dropout(MHA(x, mask))); out = LayerNorm(h + FFN(h)), where the FFN is
    `nn.Sequential(Linear(E, E), GELU(), Linear(E, E), Dropout(layer_drop_rate))` (the
    source's width: no expansion). Attribute names: `attention` (its attention dropout at
    `attn_drop_rate`), `dropout = nn.Dropout(layer_drop_rate)` (on the attention's output
    only: the FFN's own Dropout is its last layer, applied once), `norm1`, `ffn`, `norm2`.

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): `torch.nn.TransformerEncoderLayer`, `torch.nn.TransformerDecoderLayer`,
    `torch.nn.TransformerEncoder`, `torch.nn.TransformerDecoder`, `torch.nn.Transformer`.
    """

    def __init__(self, embed_dim: int, n_heads: int, attn_drop_rate: float,
                 layer_drop_rate: float):
        super().__init__()
        # TODO: the attribute names and the feed-forward's layers are in the class docstring;
        #       the feed-forward keeps the width E.
        raise NotImplementedError("TransformerBlock.__init__: not implemented yet")

    def forward(self, inputs):
        x, mask = inputs
        # TODO: post-LN: each sublayer's output is added to its input and the sum normalised;
        #       attention (with the mask) first, the feed-forward second; the mask travels on
        #       with the output.
        raise NotImplementedError("TransformerBlock.forward: not implemented yet")
        return out, mask


class PositionalEncoding(nn.Module):
    """Sinusoidal position encodings added to the embeddings, then dropout (given).

    PE[pos, 2i] = sin(pos / 10000^(2i / E)), PE[pos, 2i + 1] = cos(pos / 10000^(2i / E)).
    forward(x (B, T, E)) -> (B, T, E), for T <= max_len.
    """

    def __init__(self, embed_dim: int, dropout: float = 0.1, max_len: int = 512):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        position = torch.arange(max_len, dtype=torch.float64)[:, None]            # (L, 1)
        inv_freq = torch.exp(torch.arange(0, embed_dim, 2, dtype=torch.float64)
                             * (-math.log(10000.0) / embed_dim))                # (E/2,)
        pe = torch.zeros(max_len, embed_dim, dtype=torch.float64)
        pe[:, 0::2] = torch.sin(position * inv_freq)
        pe[:, 1::2] = torch.cos(position * inv_freq[: embed_dim // 2])
        self.register_buffer("pe", pe.float(), persistent=False)

    def forward(self, x):
        if x.shape[1] > self.pe.shape[0]:
            raise ValueError(f"sequence of length {x.shape[1]} is longer than max_len "
                             f"{self.pe.shape[0]}")
        return self.dropout(x + self.pe[: x.shape[1]].to(x.dtype))


class BertModel(nn.Module):
    """BERT for masked-language modelling.

    `embedding = nn.Embedding(vocab_size + 1, E)` (row `vocab_size` is the [MASK] token) ->
    `pos_encoding = PositionalEncoding(E, layer_drop_rate)` -> `layers`, an nn.Sequential of
    n_layers TransformerBlocks -> `mlm_head = nn.Linear(E, vocab_size)`.
    forward(batch_text (B, T) int64, mask (B, T) or None) -> logits (B, T, vocab_size).

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): `torch.nn.TransformerEncoderLayer`, `torch.nn.TransformerDecoderLayer`,
    `torch.nn.TransformerEncoder`, `torch.nn.TransformerDecoder`, `torch.nn.Transformer`.
    """

    def __init__(self, n_layers: int, vocab_size: int, embed_dim: int, n_heads: int,
                 attn_drop_rate: float, layer_drop_rate: float):
        super().__init__()
        self.vocab_size = vocab_size
        # TODO: the four attributes of the class docstring; the embedding has one row more than
        #       the vocabulary, for the mask token.
        raise NotImplementedError("BertModel.__init__: not implemented yet")

    def forward(self, batch_text, mask=None):
        # TODO: ids (B, T) become vectors (B, T, E) with their positions; the blocks pass (x,
        #       mask) pairs along; the head gives (B, T, vocab_size).
        raise NotImplementedError("BertModel.forward: not implemented yet")
        return logits


# ---------------------------------------------------------------------------------------
# Part 2. Masked-LM pretraining
# ---------------------------------------------------------------------------------------


def mask_inputs(text, mask_token: int, vocab_size: int, mask_rate: float = 0.15,
                pad_id: int | None = 0, only_mask: bool = False, generator=None):
    """BERT's input corruption: returns (masked_text, labels), both (B, T) int64.

    Draw, in this order, each with `generator` (a torch.Generator, or None for the global
    one), all of shape text.shape:
      1. `select = torch.rand(...) < mask_rate`, then drop padding (text == pad_id; pad_id
         None means no padding);
      2. `kind = torch.rand(...)`: a selected token becomes `mask_token` where kind < 0.8,
         a random token where 0.8 <= kind < 0.9, and stays itself otherwise;
      3. `random_tokens = torch.randint(0, vocab_size, ...)`.
    Every draw is made on the generator's device (the CPU when `generator` is None: the
    global CPU generator) and moved to text's device, so text on a GPU with a CPU generator
    gets the draws a CPU run gets.
    only_mask=True: every selected token becomes `mask_token`; the same three draws are made
    (the generator ends in the same state either way).
    labels: the original id where selected, IGNORE_INDEX (-100) everywhere else.
    The input is not modified.

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): `transformers.DataCollatorForLanguageModeling`.
    """
    # TODO: the draws and their order are fixed by the docstring (two uniform tensors of the
    #       text's shape, then random ids); decide every token's fate from them at once, without
    #       loops.
    raise NotImplementedError("mask_inputs: not implemented yet")
    return masked_text, labels


def pretraining_step(model, optimizer, text, mask_token: int, vocab_size: int,
                     mask_rate: float = 0.15, pad_id: int | None = 0, generator=None) -> float:
    """One masked-LM step; returns the loss as a Python float.

    `mask_inputs(text, ...)` with the given arguments; the model sees the masked text and
    the padding mask of the ORIGINAL text (text == pad_id, or None without padding: a
    random replacement that happens to be pad_id is not padding); the loss is
    `F.cross_entropy` of logits (B * T, vocab_size) against the labels flattened (-100 is
    ignored); then clear the gradients, backward, optimizer step.
    """
    # TODO: corrupt the batch, predict every position with padding hidden from attention, score
    #       only the labelled positions against the vocabulary, take one optimiser step; return
    #       the loss as a float.
    raise NotImplementedError("pretraining_step: not implemented yet")
    return loss.item()


# ---------------------------------------------------------------------------------------
# Part 3. Fine-tuning on top of a frozen pretrained BERT
# ---------------------------------------------------------------------------------------


class BERTGRUSentiment(nn.Module):
    """A GRU classifier on a frozen pretrained BERT's token features.

    bert: a `transformers` BertModel (its hidden size is `bert.config.hidden_size`).
    `rnn = nn.GRU(hidden_size, hidden_dim, num_layers=n_layers, bidirectional=...,
    batch_first=True, dropout=0 if n_layers < 2 else dropout)`, `out = nn.Linear(2 *
    hidden_dim if bidirectional else hidden_dim, output_dim)`, `dropout = nn.Dropout(dropout)`.
    forward(text (B, T) int64) -> logits (B, output_dim): BERT's sequence output
    (`bert(text)[0]`, under torch.no_grad()), the GRU, its last layer's final hidden state
    (both directions concatenated, forward first, when bidirectional), dropout, `out`.
    """

    def __init__(self, bert, hidden_dim: int, output_dim: int, n_layers: int,
                 bidirectional: bool, dropout: float):
        super().__init__()
        self.bert = bert
        embedding_dim = bert.config.hidden_size
        # TODO: a GRU over BERT's hidden size (batch first, dropout only between layers), a
        #       linear layer from its final state (twice as wide when bidirectional) to
        #       output_dim, and a dropout.
        raise NotImplementedError("BERTGRUSentiment.__init__: not implemented yet")

    def forward(self, text):
        # TODO: BERT stays frozen (no gradients through it); its sequence output (B, T, hidden)
        #       feeds the GRU; the last layer's final state, both directions side by side when
        #       bidirectional, goes through the dropout and the output layer.
        raise NotImplementedError("BERTGRUSentiment.forward: not implemented yet")
        return logits


def freeze_bert(model: nn.Module) -> int:
    """Switch off gradients of every parameter whose name starts with "bert" (given);
    returns the number of trainable parameters left."""
    for name, param in model.named_parameters():
        if name.startswith("bert"):
            param.requires_grad = False
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def binary_accuracy(preds, y):
    """The fraction of logits `preds` (N,) whose rounded sigmoid equals the 0/1 label `y`
    (N,): a 0-dim tensor, e.g. 0.8 for 8 right out of 10 (not 8)."""
    # TODO: a logit above 0 predicts 1; return the fraction of predictions equal to y.
    raise NotImplementedError("binary_accuracy: not implemented yet")
    return acc


def train(model, iterator, optimizer, criterion, progress: bool = False):
    """One epoch: for each (text (B, T), label (B,) float 0/1) of `iterator`, in training
    mode: clear the gradients, predictions = model(text).squeeze(1), loss =
    criterion(predictions, label), backward, step. Returns (mean loss, mean accuracy) over
    the batches, as Python floats (accuracy from `binary_accuracy`)."""
    epoch_loss, epoch_acc, batches = 0.0, 0.0, 0
    model.train()
    for text, label in tqdm(iterator, disable=not progress, leave=False):
        # TODO: per batch: logits (B, 1) become (B,), the criterion and binary_accuracy score
        #       them, one optimiser step; return the mean loss and accuracy over the batches.
        raise NotImplementedError("train: not implemented yet")
        epoch_loss, epoch_acc = epoch_loss + loss.item(), epoch_acc + acc.item()
        batches += 1
    return epoch_loss / batches, epoch_acc / batches


def evaluate(model, iterator, criterion):
    """`train`'s loop in eval mode under torch.no_grad(), without any update. Returns
    (mean loss, mean accuracy) over the batches, as Python floats."""
    epoch_loss, epoch_acc, batches = 0.0, 0.0, 0
    # TODO: the same means as train, in evaluation mode, without gradients and without steps.
    raise NotImplementedError("evaluate: not implemented yet")
    return epoch_loss / batches, epoch_acc / batches


def epoch_time(start_time: float, end_time: float):
    """(minutes, seconds) between two time.time() values, as ints (given)."""
    elapsed = end_time - start_time
    return int(elapsed / 60), int(elapsed - int(elapsed / 60) * 60)


def predict_sentiment(model, tokenizer, sentence: str, max_input_length: int = 512) -> float:
    """P(label 1) for one sentence: `tokenizer.tokenize(sentence)`, keep the first
    max_input_length - 2 tokens, ids [cls_token_id] + convert_tokens_to_ids(tokens) +
    [sep_token_id], a batch of one on the model's device, sigmoid of the logit (eval mode).
    `prediction` is that probability as a (1, 1) tensor; the last line returns it as a Python
    float (`prediction.item()`)."""
    model.eval()
    device = next(model.parameters()).device
    # TODO: tokenize, leave room for the two special tokens, put the ids between CLS and SEP as
    #       a batch of one (1, T), and set `prediction` to the sigmoid of the model's logit
    #       (1, 1): the return line below turns it into a float.
    raise NotImplementedError("predict_sentiment: not implemented yet")
    return prediction.item()


# ---------------------------------------------------------------------------------------
# Part 4. Looking inside a pretrained BERT
# ---------------------------------------------------------------------------------------


def bert_attention(bert, input_ids, token_type_ids=None, attention_mask=None):
    """Every layer's and head's attention of a `transformers` BertModel, from its weights.

    input_ids, token_type_ids (None: all 0), attention_mask (None: all 1; here 1 = a real
    token, the library's convention): (B, T). Run `bert(..., output_hidden_states=True)`
    (eval mode, no gradients): `hidden_states[l]` is layer l's input. For layer l, with
    `att = bert.encoder.layer[l].attention.self` (`att.query`, `att.key`: nn.Linear;
    heads = bert.config.num_attention_heads), compute softmax(q k^T / sqrt(head_dim)) with
    padding keys at -inf. Returns (layers, B, heads, T, T).

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): the `output_attentions` option.
    """
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    heads = bert.config.num_attention_heads
    bert.eval()
    with torch.no_grad():
        hidden_states = bert(input_ids, token_type_ids=token_type_ids,
                             attention_mask=attention_mask,
                             output_hidden_states=True).hidden_states
        maps = []
        # TODO: each layer's input (B, T, hidden) gives queries and keys through that layer's
        #       own projections, split into heads (B, heads, T, head_dim); padding keys get no
        #       weight.
        raise NotImplementedError("bert_attention: not implemented yet")
    return torch.stack(maps)

