"""Training the thought delimiters' embeddings faster than the rest of the model (Quiet-STaR sec. 4.2).

The paper puts a larger weight on the gradients of the two delimiter embeddings so they move faster than the
rest of the model. Here the weight is realised the way the authors' code does it: during training the two rows
live in a separate parameter stored divided by the weight and multiplied back on use, so the gradient reaching
the parameter is `weight` times larger and an Adam step moves the embedding `weight` times further.
`write_back` copies them into the model's embedding matrix, so the saved model is an ordinary HF folder.
Exercise: `pytest tests/stages/quietstar/test_quietstar_tokens.py`.
"""

from __future__ import annotations

import torch
from torch import nn

from ...errors import ForgeError
from ...models.formats.thoughts import ThoughtTokens


class ThoughtEmbedding(nn.Module):
    """Input embeddings with the two delimiter rows trained through a `grad_weight`-scaled parameter.

    Call it like the embedding layer (`ids -> vectors`). The model's embedding matrix is used for every other
    id and is not registered here (it stays the model's parameter). When the model ties its LM head to the
    embeddings (the tiny profile, SmolLM2), a delimiter's input row is also its output row; `output_head()`
    then scores with the trained rows too, so training sees (and keeps in check) the delimiters' logits
    exactly as the saved, tied model will have them.
    """

    def __init__(self, model, tokens: ThoughtTokens, grad_weight: float = 100.0):
        super().__init__()
        if grad_weight <= 0:
            raise ForgeError(f"thought embedding gradient weight must be positive, got {grad_weight}")
        self._model = [model]  # a list keeps the model's parameters out of this module's parameters()
        self.tokens = tokens
        self.grad_weight = float(grad_weight)
        rows = model.get_input_embeddings().weight[list(tokens.ids)].detach().clone()
        self.scaled = nn.Parameter(rows / self.grad_weight)

    @property
    def vectors(self) -> torch.Tensor:
        """The two delimiter embeddings (start, end) as the model sees them."""
        return self.scaled * self.grad_weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        embedding = self._model[0].get_input_embeddings()
        out = embedding(input_ids)
        vectors = self.vectors.to(out.dtype)
        for row, token_id in enumerate(self.tokens.ids):
            hit = (input_ids == token_id).unsqueeze(-1)
            out = torch.where(hit, vectors[row], out)
        return out

    @property
    def tied(self) -> bool:
        model = self._model[0]
        out = model.get_output_embeddings()
        return out is not None and out.weight is model.get_input_embeddings().weight

    def output_head(self):
        """A callable `hidden -> logits` for one forward pass (the patched matrix is built once per call)."""
        out = self._model[0].get_output_embeddings()
        if not self.tied:
            return out
        ids = torch.tensor(self.tokens.ids, device=out.weight.device)
        weight = out.weight.index_copy(0, ids, self.vectors.to(out.weight.dtype))
        bias = getattr(out, "bias", None)
        return lambda hidden: nn.functional.linear(hidden, weight, bias)

    @torch.no_grad()
    def write_back(self) -> None:
        """Copy the trained delimiter rows into the model's embedding matrix (done before saving)."""
        weight = self._model[0].get_input_embeddings().weight
        weight[list(self.tokens.ids)] = self.vectors.to(weight.dtype)
