import pytest


@pytest.fixture
def signed(monkeypatch) -> list[int]:
    """Counts the texts MinHash signs, per call (a spy on our own MinHasher, not a mock of a tool)."""
    from curate.dedup import minhash

    counts: list[int] = []
    original = minhash.MinHasher.signatures

    def spy(self, texts):
        counts.append(len(texts))
        return original(self, texts)

    monkeypatch.setattr(minhash.MinHasher, "signatures", spy)
    return counts


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tiny models run fastest on one thread, and a loaded 2-core machine makes more threads thrash."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def smollm2_cache(tmp_path_factory):
    """A model cache holding SmolLM2-135M-Instruct converted from the installed wheel: once per test
    session (~30-60 s). Tests that need `base_model.source: smollm2-135m-instruct` point
    CURATE_MODEL_CACHE here (monkeypatch.setenv)."""
    from curate.models import smollm2

    cache = tmp_path_factory.mktemp("model-cache")
    smollm2.provision(cache)
    return cache


@pytest.fixture(scope="session")
def smollm2_dir(smollm2_cache):
    """The converted SmolLM2-135M-Instruct Hugging Face directory (fp32 safetensors + tokenizer)."""
    from curate.models import smollm2

    return smollm2.provision(smollm2_cache)
