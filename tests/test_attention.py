"""The attention reference against the source exercise's printed values, the suite's properties,
and the known mistakes that only particular cases can see (all in-process: fast)."""
import torch
from torch import nn

from dlkit import load_assignment
from grader import authoring
from grader.authoring import run_case
from grader.cases import failed_property, judge, leaves
from grader.check import public_cases
from grader.suites import load_suite

A = load_assignment("attention", "solutions")
SUITE = load_suite("attention")
PRINTED = 6e-5  # the source printed 4 decimals


def printed(got, expected):
    return torch.allclose(got.detach().float(), torch.tensor(expected), rtol=0, atol=PRINTED)


def variant(name, tmp_path, kind="mutants"):
    folder = tmp_path / kind / name
    authoring.write_variant("attention", name, folder, kind)
    return load_assignment("attention", folder)


def verdict(module, case_name):
    """The verdict of `module` on the public set, with the fixture's known mistakes."""
    case, fixture = SUITE[case_name], public_cases("attention")[case_name]
    return judge(case, run_case(case, module, fixture["inputs"]), fixture["expected"],
                 fixture["mutants"])


def source_pe_output(module):
    return module.PositionalEncoder(512)((torch.arange(1, 513) * 0.01).repeat(1, 4, 1).float())


def test_positional_encoding_matches_the_paper_formula():
    out = source_pe_output(A)
    assert out.shape == (1, 4, 512)
    assert printed(out[0, 0, :5], [0.2263, 1.4525, 0.6788, 1.9051, 1.1314])
    assert printed(out[0, 1, :5], [1.0677, 0.9929, 1.5007, 1.4748, 1.9333])
    assert printed(out[0, 2, -5:], [115.9473, 115.1738, 116.3998, 115.6263, 116.8524])
    pe = A.PositionalEncoder(64).pe
    assert pe.shape == (1, 80, 64) and pe.dtype == torch.float32
    assert torch.equal(pe[0, 0], torch.tensor([0.0, 1.0] * 32))
    i = 6  # column 2i = 12 and 2i + 1 = 13 share the frequency 1 / 10000**(12/64)
    assert torch.allclose(pe[0, 5, 12:14], torch.tensor(
        [torch.sin(torch.tensor(5 / 10000 ** (2 * i / 64))),
         torch.cos(torch.tensor(5 / 10000 ** (2 * i / 64)))]), atol=1e-6)


def test_blog_formula_mistake_reproduces_the_source_hint_and_is_named(tmp_path):
    blog = variant("pe_blog_formula", tmp_path)
    out = source_pe_output(blog)
    assert printed(out[0, 1, :5], [1.0677, 1.0222, 1.4808, 1.5285, 1.8931])
    assert printed(out[0, 2, -5:], [115.9473, 115.1735, 116.3998, 115.6261, 116.8524])
    for case in ("pe/source", "pe/sizes"):
        v = verdict(blog, case)
        assert not v.passed and "blog formula" in v.message, v.message


def test_attention_reproduces_the_source_printout():
    torch.manual_seed(42)
    q, k, v = torch.randn(2, 5, 512), torch.randn(2, 5, 512), torch.randn(2, 5, 256)
    output, weights = A.attention(q, k, v)
    assert output.shape == (2, 5, 256) and weights.shape == (2, 5, 5)
    assert printed(output[0, 0, :25], [
        -1.3709, -0.6827, 0.3234, 0.8677, -0.1474, -0.9653, -0.7344, 0.8126, 0.1219, 0.3224,
        0.6257, -0.0958, -0.1664, -0.0667, -0.2810, 0.3068, -0.7030, -0.6719, 0.4364, -1.0071,
        0.3534, 0.3160, 0.0326, -0.7315, -0.5165])
    assert printed(output[-1, -1, -25:], [
        -0.2094, 1.3784, 0.2855, -0.1716, 0.1597, -0.6656, 0.3981, -0.9903, -0.6043, -0.6398,
        0.0563, -1.5367, -0.0225, -0.8317, 0.0572, 0.2014, 0.1324, -0.4563, 0.3832, 0.1051,
        0.0653, -0.2076, 0.6225, -0.4946, -0.2935])
    # The source's rtol=1 comparison, made strict.
    assert torch.allclose(output, torch.nn.functional.scaled_dot_product_attention(q, k, v),
                          rtol=1e-4, atol=1e-5)


def test_modules_reproduce_the_source_printouts_in_the_documented_order():
    torch.manual_seed(48)
    sa = A.SelfAttention(512, 64, 512)
    x = torch.randn(4, 10, 512)
    assert printed(x[0, 0, :5], [-0.1988, -0.3060, 0.6383, 0.5713, 1.2769])
    out = sa(x)
    assert printed(out[0, 0, :5], [8.6836e-02, -4.1725e-02, -2.5798e-01, -9.6712e-02, 3.0079e-05])
    assert printed(out[-1, -1, :10], [0.1849, 0.3706, 0.1488, 0.0898, 0.2528, 0.4277, 0.4572,
                                      0.1172, 0.0893, -0.2081])
    torch.manual_seed(14)
    ca = A.CrossAttention(512, 256, 64, 128)
    x, y = torch.randn(3, 10, 512), torch.randn(3, 10, 256)
    assert printed(y[0, 0, :10], [-2.1565, 0.2397, 0.5872, 0.3950, -0.6114, 0.3489, -0.3467,
                                  0.2792, -1.2541, 0.4053])
    assert printed(ca(x, y)[0, 0, :10], [-0.1544, 0.0847, 0.2329, 0.0549, -0.1424, 0.0711,
                                         0.0105, -0.2139, -0.0208, -0.1942])
    torch.manual_seed(10)
    mha = A.MultiHeadedAttention([A.SelfAttention(256, 128, 64 // 8) for _ in range(8)], 32)
    x = torch.randn(3, 10, 256)
    assert printed(x[0, 0, :10], [0.7195, -0.3636, 1.3771, 0.3482, -0.0604, -0.3034, -0.0698,
                                  0.2131, -0.9736, -0.4651])
    out = mha(x)
    assert out.shape == (3, 10, 32)
    assert printed(out[0, 0, :10], [0.2290, -0.0350, 0.0918, -0.1069, -0.1679, -0.1939,
                                    -0.2167, 0.1841, 0.0546, 0.1668])


def test_fixtures_hold_the_source_values():
    """The */source cases' expected values are the printed ones (in float64)."""
    cases = public_cases("attention")
    assert printed(cases["attention/source"]["expected"]["output"][0, 0, :5],
                   [-1.3709, -0.6827, 0.3234, 0.8677, -0.1474])
    assert printed(cases["selfattn/source"]["expected"]["output"][-1, -1, :3],
                   [0.1849, 0.3706, 0.1488])
    assert printed(cases["cross/source"]["expected"][0, 0, :3], [-0.1544, 0.0847, 0.2329])
    assert printed(cases["mha/source"]["expected"][0, 0, :3], [0.2290, -0.0350, 0.0918])
    assert printed(cases["pe/source"]["expected"]["output"][0, 1, :5],
                   [1.0677, 0.9929, 1.5007, 1.4748, 1.9333])
    for name, case in cases.items():  # every numeric check runs in float64 but the buffers
        for where, value in leaves(case["expected"]):
            buffer = name.startswith("pe/") and where.startswith("pe")  # float32 by contract
            assert value.dtype == (torch.float32 if buffer else torch.float64) \
                or not value.is_floating_point(), (name, where)


def test_every_property_holds_for_the_reference():
    fixtures = public_cases("attention")
    with_properties = [c for c in SUITE if c.properties]
    assert {p.name for c in with_properties for p in c.properties} == {
        "rows sum to 1", "no weight on the future", "permutation equivariant", "causal"}
    for case in with_properties:
        assert failed_property(case, run_case(case, A, fixtures[case.name]["inputs"])) is None


def test_named_properties_catch_their_mistakes(tmp_path):
    fixtures = public_cases("attention")
    for mutant, case_name, prop in [("softmax_query_axis", "attention/vs_torch", "rows sum to 1"),
                                    ("causal_mask_transposed", "causal/attention",
                                     "no weight on the future"),
                                    ("causal_mask_zero", "causal/attention",
                                     "no weight on the future"),
                                    ("causal_module_unmasked", "causal/module", "causal")]:
        case = SUITE[case_name]
        broken = failed_property(case, run_case(case, variant(mutant, tmp_path),
                                                fixtures[case_name]["inputs"]))
        assert broken and repr(prop) in broken, (mutant, broken)


def test_construction_order_is_seen_only_by_the_source_cases(tmp_path):
    swapped = variant("linear_v_created_first", tmp_path)
    v = verdict(swapped, "selfattn/source")
    assert not v.passed and "linear_v before linear_q" in v.message, v.message
    assert verdict(swapped, "selfattn/weights").passed  # same maths, weights loaded by name
    late_q = variant("cross_query_created_last", tmp_path)
    assert not verdict(late_q, "cross/source").passed
    assert verdict(late_q, "cross/lengths").passed


def test_value_size_scale_is_caught_where_d_v_differs(tmp_path):
    wrong = variant("scale_by_value_dim", tmp_path)
    v = verdict(wrong, "attention/vs_torch")
    assert not v.passed and "sqrt(d_v)" in v.message, v.message


def test_heads_are_sized_by_their_output_dim():
    class Head(nn.Module):  # not a SelfAttention: no linear_v to read a size from
        output_dim = 3

        def forward(self, x):
            return x[..., :3] * 2

    mha = A.MultiHeadedAttention([Head(), A.SelfAttention(5, 2, 4)], 6)
    assert mha.linear_out.in_features == 7
    assert isinstance(mha.attn_modules, nn.ModuleList)
    assert mha(torch.randn(2, 3, 5)).shape == (2, 3, 6)


def test_causal_attention_hides_exactly_the_future():
    q, k, v = torch.randn(2, 5, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 3)
    out, w = A.causal_attention(q, k, v)
    assert torch.equal(w.triu(1), torch.zeros_like(w))
    assert torch.allclose(w.sum(-1), torch.ones(2, 5))
    assert torch.allclose(out[:, 0], v[:, 0])  # the first position sees only itself
    assert torch.allclose(out, torch.nn.functional.scaled_dot_product_attention(
        q, k, v, is_causal=True), atol=1e-6)
