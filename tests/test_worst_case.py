"""The worst case over attacks: per forget-side key, the attacked value closest to the target's."""

from unlearn_cli.worst_case import forget_side_split, worst_case


def test_the_attack_closest_to_the_target_is_the_worst_case_per_forget_key():
    m = {"target/forget_qa_acc": 1.0, "unlearned/forget_qa_acc": 0.0, "relearn/forget_qa_acc": 0.4,
         "quantize/forget_qa_acc": 0.7, "ood/forget_qa_acc": 0.1,
         # lower is the target's direction here: closeness, not a direction, decides
         "target/forget_truth_ratio": 0.2, "relearn/forget_truth_ratio": 0.5, "quantize/forget_truth_ratio": 0.9,
         "target/retain_qa_acc": 1.0, "relearn/retain_qa_acc": 0.2}
    values, sources = worst_case(m, ["relearn", "quantize", "ood"], ("forget",))
    assert values == {"worst/forget_qa_acc": 0.7, "worst/forget_truth_ratio": 0.5}
    assert sources == {"forget_qa_acc": "quantize", "forget_truth_ratio": "relearn"}  # retain keys get none


def test_ties_go_to_the_attack_run_first_and_nothing_without_a_target():
    m = {"target/forget_x": 1.0, "b/forget_x": 0.5, "a/forget_x": 1.5}
    assert worst_case(m, ["b", "a"], ("forget",)) == ({"worst/forget_x": 0.5}, {"forget_x": "b"})
    assert worst_case({"unlearned/forget_x": 0.0, "a/forget_x": 1.0}, ["a"], ("forget",)) == ({}, {})
    assert worst_case(m, [], ("forget",)) == ({}, {})


def test_benchmark_prefixes_choose_the_forget_side_keys():
    m = {"target/wmdp_bio_mcq_acc": 0.6, "a/wmdp_bio_mcq_acc": 0.5, "target/mmlu_mcq_acc": 0.6,
         "a/mmlu_mcq_acc": 0.6}
    assert worst_case(m, ["a"], ("wmdp_bio",))[0] == {"worst/wmdp_bio_mcq_acc": 0.5}


def test_forget_side_splits_by_benchmark_naming():
    assert [s for s in ("forget", "forget_paraphrase", "retain", "holdout", "knowmem_forget", "verbmem_forget",
                        "knowmem_retain", "privleak_forget", "privleak_holdout") if forget_side_split(s, ("forget",))] \
        == ["forget", "forget_paraphrase", "knowmem_forget", "verbmem_forget", "privleak_forget"]
    assert [s for s in ("wmdp_bio", "wmdp_bio_qa", "mmlu", "mmlu_qa") if forget_side_split(s, ("wmdp_bio",))] \
        == ["wmdp_bio", "wmdp_bio_qa"]
