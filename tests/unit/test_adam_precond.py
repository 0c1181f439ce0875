"""Linearised Adam (docs/online-selection.md (12)-(14)): a hand-checked example (exact step, variants A/B,
data-dependent part) and the preconditioner read from a real torch AdamW state."""
from __future__ import annotations

import pytest
import torch

from curate.training.adam_precond import adam_preconditioner, data_dependent_update, exact_adam_step, linearized_adam_step

EXAMPLE = dict(lr=1e-3, step=3, beta1=0.9, beta2=0.999, eps=1e-8)
M, V, G = (torch.tensor(x, dtype=torch.float64) for x in ([0.01, -0.02], [1e-4, 2e-4], [0.05, 0.01]))


def expect(values):
    return torch.tensor(values, dtype=torch.float64)


# The expected values are printed to 12 decimals (9 significant digits for the steps, i.e. ~2e-9
# relative): the computed values must round to the printed ones, |error| <= half a unit in the last printed place.
PRINTED = dict(rtol=0, atol=5e-13)


def test_exact_and_linearised_steps():
    torch.testing.assert_close(exact_adam_step(M, V, G, **EXAMPLE), expect([-0.000279480935, 0.000242893929]),
                               **PRINTED)
    torch.testing.assert_close(linearized_adam_step(M, V, G, variant="A", **EXAMPLE),
                               expect([-0.000230975078, 0.000198322056]), **PRINTED)
    torch.testing.assert_close(linearized_adam_step(M, V, G, variant="B", **EXAMPLE),
                               expect([-0.000282956334, 0.000242954706]), **PRINTED)


def test_data_dependent_part_and_affinity():
    part = data_dependent_update(G, V, variant="A", step=3, beta1=0.9, beta2=0.999, eps=1e-8)
    torch.testing.assert_close(part, expect([0.082491099286, 0.011666003291]), **PRINTED)
    # the linearised step is affine in g: step(g) − step(0) = −lr · P_t(g)
    for variant in ("A", "B"):
        diff = (linearized_adam_step(M, V, G, variant=variant, **EXAMPLE)
                - linearized_adam_step(M, V, 0 * G, variant=variant, **EXAMPLE))
        torch.testing.assert_close(diff, -1e-3 * data_dependent_update(G, V, variant=variant, step=3, beta1=0.9, beta2=0.999, eps=1e-8))
    with pytest.raises(ValueError, match="variant"):
        linearized_adam_step(M, V, G, variant="C", **EXAMPLE)


def test_preconditioner_reads_torch_adamw_state():
    p = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = torch.optim.AdamW([p], lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    before = adam_preconditioner(opt, [p])[0]
    assert before.dtype == torch.float32 and torch.equal(before, torch.ones(2))  # no state yet: identity
    for g in ([0.3, -0.1], [0.2, 0.4]):
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    v = opt.state[p]["exp_avg_sq"]
    torch.testing.assert_close(adam_preconditioner(opt, [p], variant="A")[0].double(), 1 / ((v / (1 - 0.999**2)).sqrt() + 1e-8))
    torch.testing.assert_close(adam_preconditioner(opt, [p], variant="B")[0].double(), 1 / ((0.999 * v / (1 - 0.999**3)).sqrt() + 1e-8))
    torch.testing.assert_close(adam_preconditioner(opt, [p], eps=1e-2)[0].double(), 1 / ((v / (1 - 0.999**2)).sqrt() + 1e-2))
    # with variant B, D·(data-dependent part) is the exact next step up to the dropped (1−β2)g² term
    m, g = opt.state[p]["exp_avg"], torch.tensor([0.01, 0.02], dtype=torch.float64)
    exact = exact_adam_step(m, v, g, lr=1e-3, step=3, beta1=0.9, beta2=0.999, eps=1e-8)
    lin = linearized_adam_step(m, v, g, lr=1e-3, step=3, beta1=0.9, beta2=0.999, eps=1e-8, variant="B")
    torch.testing.assert_close(lin, exact, rtol=1e-2, atol=0)
    # and torch's own next step is the exact one
    p.grad = g.clone()
    old = p.detach().clone()
    opt.step()
    torch.testing.assert_close(p.detach() - old, exact - 1e-3 * 0.01 * old)  # AdamW: decoupled weight decay 0.01


def test_preconditioner_rejects_foreign_parameters_and_bad_variants():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p])
    with pytest.raises(ValueError, match="not managed"):
        adam_preconditioner(opt, [torch.nn.Parameter(torch.zeros(1))])
    p.grad = torch.ones(1)
    opt.step()
    with pytest.raises(ValueError, match="variant"):
        adam_preconditioner(opt, [p], variant="a")
