"""bench/profile_pretrain.py: the step profile the GPU sessions use to find where MFU goes, run on CPU."""

from __future__ import annotations

import pytest

from bench.profile_pretrain import category, main


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", "matmul"),
        ("nvjet_tst_128x256_64x4_1x2_h_bz_coopA_TNT", "matmul"),
        ("aten::addmm", "matmul"),
        ("aten::convolution_backward", "matmul"),
        ("pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64, 128>>", "attention"),
        ("aten::_scaled_dot_product_flash_attention_for_cpu", "attention"),
        ("void at::native::multi_tensor_apply_kernel<FusedAdamWMathFunctor>", "optimizer"),
        ("aten::_fused_adamw_", "optimizer"),
        ("triton_poi_fused_add_native_layer_norm_0", "other"),
        ("aten::mul", "other"),
        ("aten::native_layer_norm_backward", "other"),
    ],
)
def test_kernel_and_operator_names_fall_in_their_category(name, expected):
    assert category(name) == expected


def test_profile_of_micro_steps_on_cpu(tmp_path, capsys):
    trace = tmp_path / "trace.json"
    result = main(["--device", "cpu", "--tier", "tests/tiers/micro.json", "--warmup", "1", "--steps", "2", "--top", "200",
                   "--trace", str(trace)])  # fmt: skip
    out = capsys.readouterr().out
    assert result["tier"] == "micro" and result["wall_s_per_step"] > 0 and result["busy_s_per_step"] > 0
    assert sum(result["shares"].values()) == pytest.approx(1.0)
    assert result["graph_captures"] == []  # no CUDA graph on CPU
    assert result["calls_per_step"] > 100 and "operator calls per step" in out  # a micro MAE step: hundreds
    # The micro MAE's step has all four kinds of work: linear layers, attention, AdamW and the rest.
    assert all(share > 0 for share in result["shares"].values()), result["shares"]
    assert "| category |" in out and "aten::_fused_adamw_" in out
    assert trace.stat().st_size > 0
