"""Real benchmark loaders: row counts on the shared data, schema errors on small malformed files,
data-dir resolution and config binding. No network: the Hub path uses a stand-in ``datasets``."""

import json
import os
import sys
import types
from pathlib import Path

import pytest

from unlearn_cli.binding import bind
from unlearn_cli.data import loaders
from unlearn_cli.data.benchmarks.mmlu import SUBJECTS, Mmlu
from unlearn_cli.data.benchmarks.muse import Muse, MuseNews
from unlearn_cli.data.benchmarks.tofu import Tofu
from unlearn_cli.data.benchmarks.wmdp import WmdpBio, WmdpCyber
from unlearn_cli.errors import UserError
from unlearn_cli.registry import BENCHMARKS
from unlearn_cli.train.settings import TrainSettings

REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    env = os.environ.get(loaders.ENV_VAR)
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture
def data_root(monkeypatch):
    root = _shared_data()
    if not root.is_dir():
        pytest.skip(f"shared benchmark data not found at {root}")
    monkeypatch.setenv(loaders.ENV_VAR, str(root))
    return root


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(loaders.ENV_VAR, raising=False)


def _write_jsonl(path: Path, rows) -> None:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")


def _sizes(mapping) -> dict:
    return {k: len(v) for k, v in mapping.items()}


# --------------------------------------------------------------------------- TOFU

@pytest.mark.parametrize("split,n_forget,n_retain", [("forget01", 40, 3960), ("forget05", 200, 3800),
                                                     ("forget10", 400, 3600)])
def test_tofu_counts(data_root, split, n_forget, n_retain):
    data = Tofu(split=split).load()
    assert _sizes(data.train) == {"forget": n_forget, "retain": n_retain}
    assert _sizes(data.qa) == {"forget": n_forget, "retain": 400, "real_authors": 100, "world_facts": 117,
                               "holdout": n_forget}
    assert _sizes(data.mcq) == {"real_authors_mcq": 100, "world_facts_mcq": 117}
    assert len(data.texts["idontknow"]) == 100


def test_tofu_items_and_authors(data_root):
    data = Tofu(split="forget10").load()
    first = data.qa["forget"][0]
    assert len(first.perturbed) == 5 and first.paraphrased_answer and first.paraphrased_question
    assert first.value == first.answer and first.question == data.train["forget"][0].question
    assert first.entity == "author180" and data.train["forget"][-1].entity == "author199"
    assert data.train["retain"][-1].entity == "author179"
    assert len(data.qa["real_authors"][0].perturbed) == 3 and data.qa["real_authors"][0].paraphrased_answer is None
    mcq = data.mcq["world_facts_mcq"][0]
    assert len(mcq.choices) == 4 and 0 <= mcq.answer < 4


def test_tofu_subsampling(data_root):
    data = Tofu(split="forget05", num_forget_authors=2, max_items=30).load()
    assert _sizes(data.train) == {"forget": 40, "retain": 30}
    assert _sizes(data.qa) == {"forget": 40, "retain": 30, "real_authors": 30, "world_facts": 30, "holdout": 40}
    assert {it.entity for it in data.train["forget"]} == {"author190", "author191"}
    with pytest.raises(UserError, match="num_forget_authors=3 exceeds the 2 authors of forget01"):
        Tofu(split="forget01", num_forget_authors=3).load()
    with pytest.raises(UserError, match=r"^benchmark.max_items=0: must be >= 1 for benchmark 'tofu'$"):
        bind(Tofu, {"name": "tofu", "max_items": 0}, "benchmark")


def _tofu_forget01(root: Path, forget_rows, perturbed_rows=None) -> None:
    root.mkdir(exist_ok=True)
    _write_jsonl(root / "forget01.json", forget_rows)
    if perturbed_rows is not None:
        _write_jsonl(root / "forget01_perturbed.json", perturbed_rows)


def test_tofu_malformed_row_names_file_row_field(tmp_path):
    _tofu_forget01(tmp_path, [{"question": "q1", "answer": "a1"}, {"question": "q2"}])
    with pytest.raises(UserError) as err:
        Tofu(split="forget01", data_dir=str(tmp_path)).load()
    assert str(err.value) == f"{tmp_path / 'forget01.json'}: row 2: missing field 'answer'"


def test_tofu_wrong_perturbed_count(tmp_path):
    row = {"question": "q", "answer": "a", "paraphrased_answer": "p", "paraphrased_question": "pq"}
    _tofu_forget01(tmp_path, [{"question": "q", "answer": "a"}], [dict(row, perturbed_answer=["x", "y"])])
    with pytest.raises(UserError, match=r"forget01_perturbed.json: row 1: field 'perturbed_answer' must be a list of 5"):
        Tofu(split="forget01", data_dir=str(tmp_path)).load()


def test_tofu_empty_split_and_invalid_json(tmp_path):
    (tmp_path / "forget01.json").write_text("\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"forget01.json: empty split \(no rows\)"):
        Tofu(split="forget01", data_dir=str(tmp_path)).load()
    (tmp_path / "forget01.json").write_text('{"question": "q", "answer": "a"}\n{"question": \n', encoding="utf-8")
    with pytest.raises(UserError, match=r"forget01.json: line 2: invalid JSON"):
        Tofu(split="forget01", data_dir=str(tmp_path)).load()


def test_missing_file_and_dir_messages(tmp_path, no_env):
    with pytest.raises(UserError) as err:
        Tofu(split="forget05", data_dir=str(tmp_path)).load()
    assert str(err.value) == (f"{tmp_path / 'forget05.json'} not found: expected JSON Lines rows with "
                              "'question' and 'answer'")
    missing = tmp_path / "nowhere"
    with pytest.raises(UserError) as err:
        WmdpBio(data_dir=str(missing))
    message = str(err.value)
    assert "\n" not in message and str(missing) in message and "benchmark.data_dir" in message
    assert "bio-questions.json" in message


# --------------------------------------------------------------------------- data-dir resolution

def test_data_dir_wins_over_env_and_env_uses_subfolder(tmp_path, monkeypatch):
    (tmp_path / "wmdp").mkdir()
    monkeypatch.setenv(loaders.ENV_VAR, str(tmp_path))
    assert WmdpBio().source.root == tmp_path / "wmdp"
    other = tmp_path / "elsewhere"
    other.mkdir()
    assert WmdpBio(data_dir=str(other)).source.root == other
    with pytest.raises(UserError, match=f"{loaders.ENV_VAR}: folder {tmp_path / 'mmlu'} not found"):
        Mmlu()


def test_no_local_data_without_datasets_package(no_env, monkeypatch):
    monkeypatch.setattr(loaders.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError) as err:
        Tofu()
    message = str(err.value)
    assert "benchmark.data_dir" in message and loaders.ENV_VAR in message and "locuslab/TOFU" in message


def test_hub_fallback_uses_datasets(no_env, monkeypatch):
    calls = []
    hub = {("cais/wmdp", "wmdp-cyber", "test"): [{"question": "q", "choices": ["a", "b", "c", "d"], "answer": 2}],
           ("cais/mmlu", "virology", "test"): [{"question": "v", "subject": "virology",
                                                "choices": ["w", "x", "y", "z"], "answer": 1}],
           ("cais/mmlu", "virology", "dev"): []}

    def load_dataset(hub_id, config, split):
        calls.append((hub_id, config, split))
        return hub[(hub_id, config, split)]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.setattr(loaders.importlib.util, "find_spec", lambda name: object())
    cyber = WmdpCyber()
    assert cyber.cache_key()["source"] == "hf:cais/wmdp"
    item = cyber.load().mcq["wmdp_cyber"][0]
    assert (item.choices, item.answer) == (("a", "b", "c", "d"), 2)
    with pytest.raises(UserError, match=r"cais/mmlu\[virology/dev\]: empty split"):
        Mmlu(subjects=["virology"]).load()
    assert calls == [("cais/wmdp", "wmdp-cyber", "test"), ("cais/mmlu", "virology", "test"),
                     ("cais/mmlu", "virology", "dev")]


# --------------------------------------------------------------------------- WMDP

def test_wmdp_counts_and_missing_corpus(data_root):
    bio, cyber = WmdpBio().load(), WmdpCyber().load()
    assert len(bio.mcq["wmdp_bio"]) == 1520 and len(cyber.mcq["wmdp_cyber"]) == 2225
    assert bio.train == {} and all(len(it.choices) == 4 for it in bio.mcq["wmdp_bio"])
    with pytest.raises(UserError, match="no 'forget' training split: no forget corpus.*benchmark.forget_corpus"):
        bio.train_split("forget")


def test_wmdp_local_corpora(data_root, tmp_path):
    forget = tmp_path / "forget.jsonl"
    forget.write_text("\n".join([json.dumps({"text": "x" * 60}), json.dumps({"text": "short"}), ""]), encoding="utf-8")
    retain = tmp_path / "retain.txt"
    retain.write_text("a raw retain line that is long enough to keep\ntiny\n", encoding="utf-8")
    data = WmdpCyber(forget_corpus=str(forget), retain_corpus=str(retain), min_len=20, max_items=5).load()
    assert [it.answer for it in data.train["forget"]] == ["x" * 60]
    assert data.train["retain"][0].question == "" and len(data.train["retain"]) == 1
    assert len(data.mcq["wmdp_cyber"]) == 5 and data.missing == {}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"content": "y" * 80}) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.jsonl: line 1: missing field 'text'"):
        WmdpBio(forget_corpus=str(bad)).load()


def test_wmdp_malformed_choices(tmp_path):
    rows = [{"question": "q", "choices": ["a", "b", "c", "d"], "answer": 0},
            {"question": "q", "choices": ["a", "b", "c"], "answer": 0}]
    (tmp_path / "bio-questions.json").write_text(json.dumps(rows), encoding="utf-8")
    with pytest.raises(UserError, match=r"bio-questions.json: row 2: field 'choices' must be a list of 4 strings"):
        WmdpBio(data_dir=str(tmp_path)).load()
    rows[1] = {"question": "q", "choices": ["a", "b", "c", "d"], "answer": 4}
    (tmp_path / "bio-questions.json").write_text(json.dumps(rows), encoding="utf-8")
    with pytest.raises(UserError, match=r"row 2: field 'answer' must be an integer 0-3"):
        WmdpBio(data_dir=str(tmp_path)).load()


# --------------------------------------------------------------------------- MMLU

def test_mmlu_counts(data_root):
    data = Mmlu().load()
    assert len(data.mcq["mmlu"]) == 14042 and len(data.mcq["mmlu_dev"]) == 285
    assert {it.entity for it in data.mcq["mmlu"]} == set(SUBJECTS) and len(SUBJECTS) == 57
    assert sorted(p.name[:-len("_test.csv")] for p in (data_root / "mmlu" / "test").iterdir()) == sorted(SUBJECTS)
    small = Mmlu(subjects=["virology", "college_biology"], max_per_subject=3).load()
    assert [it.entity for it in small.mcq["mmlu"]] == ["virology"] * 3 + ["college_biology"] * 3
    assert len(small.mcq["mmlu_dev"]) == 10
    with pytest.raises(UserError, match="has no 'forget' training split: mmlu is an evaluation-only"):
        small.train_split("forget")


def test_mmlu_unknown_subject_suggests():
    with pytest.raises(UserError, match="unknown MMLU subject 'virolgy'; did you mean 'virology'"):
        Mmlu(subjects=["virolgy"])


def test_mmlu_malformed_csv(tmp_path):
    (tmp_path / "test").mkdir()
    csv_path = tmp_path / "test" / "anatomy_test.csv"
    csv_path.write_text('question,choice0,choice1,choice2,choice3,answer\n"q, with comma",a,b,c,d,3\nq2,a,b,c,d,B\n',
                        encoding="utf-8")
    with pytest.raises(UserError, match=r"anatomy_test.csv: row 2: field 'answer' must be an integer 0-3, got 'B'"):
        Mmlu(data_dir=str(tmp_path), subjects=["anatomy"]).load()
    csv_path.write_text("question,choice0,choice1,choice2,answer\nq,a,b,c,1\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"anatomy_test.csv: row 1: missing field 'choice3'"):
        Mmlu(data_dir=str(tmp_path), subjects=["anatomy"]).load()


# --------------------------------------------------------------------------- MUSE-News

def test_muse_news_counts_and_missing_retain(data_root):
    data = MuseNews().load()
    assert _sizes(data.train) == {"forget": 889}
    assert _sizes(data.qa) == {"knowmem_forget": 100, "knowmem_retain": 100, "knowmem_forget_icl": 10,
                               "knowmem_retain_icl": 10, "verbmem_forget": 100}
    assert _sizes(data.texts) == {"privleak_forget": 100, "privleak_retain": 100, "privleak_holdout": 100}
    assert data.train["forget"][0].question == "" and data.qa["verbmem_forget"][0].question
    with pytest.raises(UserError, match=r"raw/retain1.json is not in this copy.*retain_source=knowmem_qa"):
        data.train_split("retain")


def test_muse_news_options(data_root):
    data = MuseNews(forget_split="sust/forget_4", retain_source="knowmem_qa", max_items=4).load()
    assert _sizes(data.train) == {"forget": 4, "retain": 4}
    assert data.train["retain"][0].question and len(data.qa["knowmem_forget_icl"]) == 10
    assert len(MuseNews(forget_split="sust/forget_4").load().train["forget"]) == 887
    # raw/forget subsample: the articles the kept VerbMem / PrivLeak windows were cut from
    aligned = MuseNews(retain_source="knowmem_qa", max_items=2).load()
    corpus = "\n\n".join(it.answer for it in aligned.train["forget"])
    for window in [it.question + it.answer for it in aligned.qa["verbmem_forget"]] + aligned.texts["privleak_forget"]:
        assert window[:500] in corpus
    assert all(it.answer.lower() in corpus.lower() for it in aligned.qa["knowmem_forget"])
    with pytest.raises(UserError, match=r"scal/forget_2.json not found.*sust/forget_1..k concatenated"):
        MuseNews(forget_split="scal/forget_2").load()
    with pytest.raises(UserError, match="benchmark.forget_split must be one of"):
        MuseNews(forget_split="raw/retain1")


def test_muse_malformed_verbmem(tmp_path):
    for sub in ("raw", "knowmem", "verbmem"):
        (tmp_path / sub).mkdir()
    (tmp_path / "raw" / "forget.json").write_text(json.dumps(["article"]), encoding="utf-8")
    for name in ("forget_qa", "retain_qa", "forget_qa_icl", "retain_qa_icl"):
        (tmp_path / "knowmem" / f"{name}.json").write_text(json.dumps([{"question": "q", "answer": "a"}]))
    (tmp_path / "verbmem" / "forget.json").write_text(json.dumps([{"prompt": "p"}]), encoding="utf-8")
    with pytest.raises(UserError, match=r"verbmem/forget.json: row 1: missing field 'gt'"):
        MuseNews(data_dir=str(tmp_path)).load()


# --------------------------------------------------------------------------- configs

@pytest.mark.parametrize("name", [n for n in BENCHMARKS.names() if n != "fictional"])
def test_benchmark_yaml_binds(name):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"benchmark={name}"])
    cls = BENCHMARKS.get(cfg.benchmark.name)
    assert cls.registry_name == name
    assert set(bind(cls, cfg.benchmark, "benchmark")) >= {"data_dir"}
    settings = TrainSettings(**bind(TrainSettings, cfg.unlearn, "unlearn"))
    assert settings.lr > 0


def test_a_tiny_target_needs_forget_and_retain_training_splits():
    from unlearn_cli.data.items import BenchmarkData
    from unlearn_cli.models.build import ModelSpec
    from unlearn_cli.train.prepare import target_and_oracle
    data = BenchmarkData(name="mmlu", train={}, missing={"forget": "mmlu is evaluation-only"})
    with pytest.raises(UserError, match=r"benchmark 'mmlu' has no 'forget' split: mmlu is evaluation-only"):
        target_and_oracle(data, ModelSpec(), None, None, REPO, True, None, None)
    muse = BenchmarkData(name="muse_news", train={"forget": ["x"]}, missing={"retain": "retain_source=none"})
    with pytest.raises(UserError, match=r"has no 'retain' split: retain_source=none"):
        target_and_oracle(muse, ModelSpec(), None, None, REPO, True, None, None)



def test_benchmark_muse_is_muse_news_by_default_and_books_is_its_own_source(data_root, tmp_path, monkeypatch):
    news, legacy = Muse().load(), MuseNews().load()
    assert news.name == legacy.name == "muse_news" and news.published == {"privleak_oracle_auc": 0.4772}
    assert len(news.train["forget"]) == len(legacy.train["forget"]) == 889
    assert Muse().cache_key() == MuseNews().cache_key()  # same data, same cached tiny targets
    monkeypatch.setenv("UNLEARN_DATA_DIR", str(tmp_path))
    (tmp_path / "muse").mkdir()
    with pytest.raises(UserError, match=r"UNLEARN_DATA_DIR: folder .*muse/books not found; expected a folder holding "
                                         r"the MUSE-Books subsets"):
        Muse(corpus="books")
    with pytest.raises(UserError, match="benchmark muse_news is the news corpus"):
        MuseNews(corpus="books")
