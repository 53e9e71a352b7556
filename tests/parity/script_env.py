"""What the test scripts that drive the hsloth binary against transformers check first (shared by
tests/unit/train_safety.py, tests/unit/test_profile.py, tests/mpi/rank_agree.py and tests/mpi/world_equiv.py)."""
import os


def missing(bin_path, extra=()):
    """None when the hsloth binary exists and the oracle packages (tokenizers, torch, transformers and `extra`)
    import; otherwise says why and returns the script's exit code: 1 (no binary: a failure) or 77 (oracles
    missing: CTest's skip)."""
    if not bin_path or not os.path.exists(bin_path):
        print(f"FAIL: hsloth binary not found ($HSLOTH_BIN={bin_path!r})")
        return 1
    try:
        import tokenizers  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401

        for name in extra:
            __import__(name)
    except ImportError as e:
        print(f"SKIP: oracle packages missing ({e})")
        return 77
    return None
