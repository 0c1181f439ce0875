"""Factorised per-sample gradients (docs/online-selection.md (9)-(10)): hand-checked examples, torch.func
agreement, ghost = materialised, projection."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from curate.training.per_sample_grads import (
    LinearGradCapture,
    RademacherProjection,
    bias_grads,
    flat_features,
    ghost_inner_products,
    inner_products,
    materialized_grads,
    use_ghost,
)

X1 = torch.tensor([[1, 0, 2, -1], [0, 1, 1, 0], [2, -1, 0, 1]], dtype=torch.float64)
D1 = torch.tensor([[1, 2, 0], [0, -1, 1], [1, 0, -2]], dtype=torch.float64)
X2 = torch.tensor([[1, 1, 0, 0], [0, 2, -1, 1]], dtype=torch.float64)
D2 = torch.tensor([[2, 1, 1], [-1, 1, 0]], dtype=torch.float64)


def padded(*pairs):
    """B×T×d factors from per-sample (X, Δ) of different lengths, zero-padded (Δ = 0 on padding)."""
    T = max(x.shape[0] for x, _ in pairs)
    X = torch.zeros(len(pairs), T, pairs[0][0].shape[1], dtype=torch.float64)
    D = torch.zeros(len(pairs), T, pairs[0][1].shape[1], dtype=torch.float64)
    for i, (x, d) in enumerate(pairs):
        X[i, : x.shape[0]], D[i, : d.shape[0]] = x, d
    X[1, 2] = 7.0  # garbage input at a padding position must not matter (its Δ is 0)
    return {"layer": (X, D)}


def test_factorised_inner_products_by_hand():
    factors = padded((X1, D1), (X2, D2))
    G = materialized_grads(factors)["layer"]
    assert torch.equal(G[0], torch.tensor([[3, -1, 2, 0], [2, -1, 3, -2], [-4, 3, 1, -2]], dtype=torch.float64))
    assert torch.equal(G[1], torch.tensor([[2, 0, 1, -1], [1, 3, -1, 1], [1, 1, 0, 0]], dtype=torch.float64))
    for route in ("ghost", "materialize"):
        K = inner_products(factors, factors, route=route)
        assert K.tolist() == [[62.0, 1.0], [1.0, 20.0]]
    assert ghost_inner_products(factors, factors)[0, 1] == 1.0
    b = bias_grads(factors)["layer"]
    assert b.tolist() == [[2, 1, -1], [1, 2, 1]] and float(b[0] @ b[1]) == 3.0
    assert not use_ghost(3, 4, 3)  # 2T² = 18 > 12: sample 1 materialises
    assert use_ghost(2, 4, 3)  # 8 <= 12


def lora_loss_factors(A, B, s, X, delta):
    """Hooks on a hand-written LoRA (x -> s·B(Ax)) with loss Σ_t δ_t·z_t, so ∂L/∂z_t = δ_t."""
    lora_A = nn.Linear(A.shape[1], A.shape[0], bias=False).double()
    lora_B = nn.Linear(B.shape[1], B.shape[0], bias=False).double()
    with torch.no_grad():
        lora_A.weight.copy_(A)
        lora_B.weight.copy_(B)
    model = nn.ModuleDict({"A": lora_A, "B": lora_B})
    with LinearGradCapture(model) as cap:
        z = s * lora_B(lora_A(X.unsqueeze(0)))
        (z * delta.unsqueeze(0)).sum().backward()
    return materialized_grads(cap.factors()), lora_A.weight.grad, lora_B.weight.grad


def test_lora_gradients_from_hooks():
    A = torch.tensor([[0.5, -1, 0, 1], [1, 0.5, -0.5, 0]], dtype=torch.float64)
    B = torch.tensor([[1, 0], [0.5, -1], [0, 2]], dtype=torch.float64)
    grads, autograd_A, autograd_B = lora_loss_factors(A, B, 2.0, X1, D1)
    expected_B = torch.tensor([[5, 3], [0, 0], [-14, -6]], dtype=torch.float64)
    expected_A = torch.tensor([[8, -3, 7, -2], [-20, 14, -2, -4]], dtype=torch.float64)
    assert torch.allclose(grads["B"][0], expected_B) and torch.allclose(grads["A"][0], expected_A)
    assert torch.allclose(autograd_B, expected_B) and torch.allclose(autograd_A, expected_A)


def test_lora_gradients_with_a_peft_lora_layer():
    peft = pytest.importorskip("peft", reason="peft is in requirements.txt; this runs whenever it is installed")
    base = nn.Sequential()
    base.add_module("proj", nn.Linear(4, 3, bias=False).double())
    config = peft.LoraConfig(r=2, lora_alpha=4, target_modules=["proj"], lora_dropout=0.0, init_lora_weights=False)
    model = peft.get_peft_model(base, config)
    layer = model.base_model.model.proj
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(torch.tensor([[0.5, -1, 0, 1], [1, 0.5, -0.5, 0]]))
        layer.lora_B["default"].weight.copy_(torch.tensor([[1, 0], [0.5, -1], [0, 2]]))
    with LinearGradCapture(model) as cap:  # default: the trainable Linear modules, i.e. lora_A and lora_B
        out = model(X1.unsqueeze(0))
        (out * D1.unsqueeze(0)).sum().backward()
    grads = materialized_grads(cap.factors())
    assert len(grads) == 2  # the frozen base weight is not captured
    (name_a,) = [n for n in grads if "lora_A" in n]
    (name_b,) = [n for n in grads if "lora_B" in n]
    assert torch.allclose(grads[name_b][0], torch.tensor([[5, 3], [0, 0], [-14, -6]], dtype=torch.float64))
    assert torch.allclose(grads[name_a][0], torch.tensor([[8, -3, 7, -2], [-20, 14, -2, -4]], dtype=torch.float64))


def rounding(magnitude: torch.Tensor, terms: int = 64) -> dict:
    """Tolerances for two computations of sums of `terms` products in other orders: each result is
    exact to terms * eps of the sum of its terms' magnitudes, taken as `magnitude`'s largest entry
    (a sum of absolute values where the caller has one, else the result itself, scaled by the
    generous `terms`). 64 covers the per-sample gradients below: 5 tokens x 11 logits."""
    eps = torch.finfo(magnitude.dtype).eps
    return {"rtol": 0.0, "atol": terms * eps * float(magnitude.abs().max())}


class TinySeqModel(nn.Module):
    """Embedding -> linear -> tanh -> linear -> per-token outputs: two linear layers over a sequence."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(11, 6)
        self.fc1 = nn.Linear(6, 5)
        self.fc2 = nn.Linear(5, 11, bias=False)

    def forward(self, ids):
        return self.fc2(torch.tanh(self.fc1(self.emb(ids))))


def per_sample_losses(model, ids, mask):
    logits = model(ids)
    ce = nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
    m = mask[:, 1:].to(ce.dtype)
    return (ce * m).sum(1) / m.sum(1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hook_gradients_equal_torch_func_per_sample_gradients(dtype):
    from torch.func import functional_call, grad, vmap

    model = TinySeqModel().to(dtype)
    ids = torch.tensor([[1, 4, 2, 9, 3], [5, 5, 7, 0, 0], [2, 8, 1, 6, 0]])
    mask = (torch.arange(5) < torch.tensor([[5], [3], [4]])).long()
    with LinearGradCapture(model) as cap:
        per_sample_losses(model, ids, mask).sum().backward()
    hooks = materialized_grads(cap.factors())
    assert set(hooks) == {"fc1", "fc2"}

    params = {k: v.detach() for k, v in model.named_parameters()}

    def one(p, i, m):
        return per_sample_losses(lambda x: functional_call(model, p, (x,)), i.unsqueeze(0), m.unsqueeze(0)).sum()

    reference = vmap(grad(one), in_dims=(None, 0, 0))(params, ids, mask)
    for name in ("fc1", "fc2"):
        torch.testing.assert_close(hooks[name], reference[f"{name}.weight"], **rounding(reference[f"{name}.weight"]))
    assert set(cap.bias_grads()) == {"fc1"}  # fc2 has no bias
    torch.testing.assert_close(cap.bias_grads()["fc1"], reference["fc1.bias"], **rounding(reference["fc1.bias"]))
    torch.testing.assert_close(bias_grads(cap.factors())["fc1"], reference["fc1.bias"], **rounding(reference["fc1.bias"]))
    # the factorised inner products equal those of the torch.func gradients, both routes
    flat = torch.cat([reference[f"{n}.weight"].flatten(1) for n in ("fc1", "fc2")], dim=1)
    for route in ("ghost", "materialize", "auto"):
        torch.testing.assert_close(inner_products(cap.factors(), cap.factors(), route=route), flat @ flat.T,
                                   **rounding(flat.abs() @ flat.abs().T, terms=flat.shape[1]))
    torch.testing.assert_close(flat_features(cap.factors()), flat)
    # capture.backward: the same factors from gradients w.r.t. the layer outputs only, no weight gradients
    model.zero_grad(set_to_none=True)
    with LinearGradCapture(model) as cap2:
        cap2.backward(per_sample_losses(model, ids, mask).sum())
    for name in ("fc1", "fc2"):
        torch.testing.assert_close(materialized_grads(cap2.factors())[name], hooks[name])
    assert all(p.grad is None for p in model.parameters())


def test_scaled_features_and_projection():
    factors = padded((X1, D1), (X2, D2))
    scale = {"layer": torch.full((3, 4), 2.0, dtype=torch.float64)}
    assert torch.equal(flat_features(factors, scale=scale), 2 * flat_features(factors))
    torch.manual_seed(1)
    u = torch.randn(6, 3000, dtype=torch.float64)
    proj = RademacherProjection(3000, 2048, seed=5)
    a, b = proj(u), RademacherProjection(3000, 2048, seed=5)(u)
    assert torch.equal(a, b)  # deterministic per seed
    assert not torch.equal(a, RademacherProjection(3000, 2048, seed=6)(u))
    exact, approx = u @ u.T, a @ a.T
    # JL: inner products preserved to within a few 1/sqrt(p) of the norms
    tol = 4 * (u.norm(dim=1)[:, None] * u.norm(dim=1)[None, :]) / 2048**0.5
    assert ((exact - approx).abs() <= tol).all()
    with pytest.raises(ValueError, match="columns"):
        proj(u[:, :10])


def test_capture_refuses_a_module_called_twice():
    lin = nn.Linear(3, 3)
    model = nn.ModuleDict({"lin": lin})
    with pytest.raises(RuntimeError, match="twice"):
        with LinearGradCapture(model):
            lin(lin(torch.ones(1, 3)))


def test_routes_agree_across_batches_of_different_lengths():
    torch.manual_seed(3)
    a = {"l1": (torch.randn(4, 6, 5, dtype=torch.float64), torch.randn(4, 6, 3, dtype=torch.float64)),
         "l2": (torch.randn(4, 6, 2, dtype=torch.float64), torch.randn(4, 6, 7, dtype=torch.float64))}
    b = {"l1": (torch.randn(3, 2, 5, dtype=torch.float64), torch.randn(3, 2, 3, dtype=torch.float64)),
         "l2": (torch.randn(3, 2, 2, dtype=torch.float64), torch.randn(3, 2, 7, dtype=torch.float64))}
    explicit = flat_features(a) @ flat_features(b).T
    for route in ("ghost", "materialize", "auto"):
        torch.testing.assert_close(inner_products(a, b, route=route), explicit)
    torch.testing.assert_close(ghost_inner_products(a, b), explicit)
    with pytest.raises(ValueError, match="same modules"):
        inner_products(a, {"l1": b["l1"]})


def test_projection_is_chunking_independent():
    torch.manual_seed(2)
    factors = {"l1": (torch.randn(3, 4, 5), torch.randn(3, 4, 6)), "l2": (torch.randn(3, 4, 7), torch.randn(3, 4, 2))}
    dim = 5 * 6 + 7 * 2
    proj = RademacherProjection(dim, 16, seed=9)
    proj.block_rows = 7  # several blocks, and module boundaries (30) that fall inside one
    whole = proj(flat_features(factors))
    u = flat_features(factors)
    tol = rounding(u.abs().sum(dim=1, keepdim=True).expand_as(whole), terms=dim)  # +-1 entries: |sum| <= sum |u|
    torch.testing.assert_close(flat_features(factors, projection=proj), whole, **tol)
    torch.testing.assert_close(proj.project_slice(u[:, :13], 0) + proj.project_slice(u[:, 13:], 13), whole, **tol)
    fresh = RademacherProjection(dim, 16, seed=9)
    fresh.block_rows = 7
    assert torch.equal(fresh(u), whole)  # deterministic: a fresh instance draws the same R
    R = fresh(torch.eye(dim))  # dim × p: the matrix itself, entries ±1/√p
    assert set(R.abs().unique().tolist()) == {0.25}
    with pytest.raises(ValueError, match="projection expects"):
        flat_features(factors, projection=RademacherProjection(dim + 1, 16, seed=9))
