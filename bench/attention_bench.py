"""Causal attention backends on this GPU, forward + backward of one layer, for the benchmark shapes.

For Llama-3.2-1B (32 heads of 64, 8 KV heads), Qwen3-0.6B (16 of 128, 8 KV) and Llama-3.1-8B (32 of 128, 8 KV),
8 rows of 2048 tokens, bf16: SDPA with each backend (torch's choice, flash, cuDNN, memory-efficient), with GQA
native (enable_gqa) and with K/V expanded, and flash-attention's varlen kernel over the flattened tokens (what
hsloth runs for packed samples of mixed lengths). Times are means of 10 calls after 3 warm-up calls. This is
what chose SDPA (cuDNN on Hopper) for packed samples of equal length in model/ops.cpp (attention_segments).

  python3 bench/attention_bench.py
"""
import torch, time
from torch.nn.attention import sdpa_kernel, SDPBackend
import torch.nn.functional as F
def t(fn, n=10):
    for _ in range(3): fn()
    torch.cuda.synchronize(); s = time.perf_counter()
    for _ in range(n): fn()
    torch.cuda.synchronize(); return (time.perf_counter() - s) / n * 1e3
dev = "cuda"
for name, H, KV, D in [("llama1b", 32, 8, 64), ("qwen0.6b", 16, 8, 128), ("8b", 32, 8, 128)]:
    B, T = 8, 2048
    q = torch.randn(B, H, T, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(B, KV, T, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(B, KV, T, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
    g = torch.randn(B, H, T, D, device=dev, dtype=torch.bfloat16)
    ke = k.detach().repeat_interleave(H // KV, 1).requires_grad_(True); ve = v.detach().repeat_interleave(H // KV, 1).requires_grad_(True)
    fl = 4 * B * H * T * T / 2 * D * 3.5  # fwd (2 GEMMs) + bwd (5 GEMMs) of causal attention
    choice = {}
    for gqa in (True, False):
        kk, vv = (k, v) if gqa else (ke, ve)
        choice[gqa] = int(torch._fused_sdp_choice(q, kk, vv, is_causal=True, enable_gqa=gqa))
        for be in (None, SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION):
            def run():
                o = F.scaled_dot_product_attention(q, kk, vv, is_causal=True, enable_gqa=gqa)
                o.backward(g)
            try:
                if be is None: ms = t(run)
                else:
                    with sdpa_kernel([be]): ms = t(run)
                print(f"{name} gqa={gqa} backend={be.name if be else 'default'}: {ms:.2f} ms fwd+bwd, {fl/ms/1e9:.0f} TFLOP/s")
            except Exception as e:
                print(f"{name} gqa={gqa} backend={be.name if be else 'default'}: error {str(e)[:120]}")
    print(f"{name}: torch picks {choice} (SDPBackend ints: flash {int(SDPBackend.FLASH_ATTENTION)}, cudnn {int(SDPBackend.CUDNN_ATTENTION)}, efficient {int(SDPBackend.EFFICIENT_ATTENTION)})")
    # flash varlen over the flattened tokens (hsloth's packed path)
    qf = q.detach().transpose(1, 2).reshape(B * T, H, D).requires_grad_(True)
    kf = k.detach().transpose(1, 2).reshape(B * T, KV, D).requires_grad_(True)
    vf = v.detach().transpose(1, 2).reshape(B * T, KV, D).requires_grad_(True)
    cu = torch.arange(0, B * T + 1, T, device=dev, dtype=torch.int32)
    gf = g.transpose(1, 2).reshape(B * T, H, D)
    def runv():
        o = torch.ops.aten._flash_attention_forward(qf, kf, vf, cu, cu, T, T, 0.0, True, False)[0]
        o.backward(gf)
    print(f"{name} flash varlen: {t(runv):.2f} ms")
