"""Distillation (`--teacher_model`) on both backends: the loss by hand, the checks, teacher → student runs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tfqa.core.config import TrainConfig


def _np_log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def test_loss_matches_a_hand_computed_value():
    from tfqa.training.distill_loss import distillation_losses

    rng = np.random.default_rng(0)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int32)  # window 0: two padding positions
    student = [rng.normal(size=(2, 5)).astype(np.float32) * 3 for _ in range(2)]
    teacher = [rng.normal(size=(2, 5)).astype(np.float32) * 3 for _ in range(2)]
    labels = [np.array([1, 4]), np.array([2, 4])]
    T, alpha = 2.0, 0.7

    def soft_ce(s, t):  # by hand: softmaxes over the real tokens only
        out = []
        for row in range(2):
            n = mask[row].sum()
            p = np.exp(_np_log_softmax(t[row, :n] / T))
            out.append(-(p * _np_log_softmax(s[row, :n] / T)).sum())
        return np.array(out)

    def hard_ce(s, y):  # the QA loss (tfqa.training.loss): softmax over the whole window
        return -_np_log_softmax(s)[np.arange(2), y]

    soft = T ** 2 * (soft_ce(student[0], teacher[0]) + soft_ce(student[1], teacher[1])) / 2
    hard = (hard_ce(student[0], labels[0]) + hard_ce(student[1], labels[1])) / 2
    expected = alpha * soft + (1 - alpha) * hard

    got = distillation_losses(student, teacher, labels, mask, alpha, T)
    np.testing.assert_allclose(got["soft"].numpy(), soft, rtol=1e-5)
    np.testing.assert_allclose(got["hard"].numpy(), hard, rtol=1e-5)
    np.testing.assert_allclose(got["loss"].numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(float(np.mean(got["loss"])), float(expected.mean()), rtol=1e-5)
    # Padding does not count: changing the logits there leaves the soft loss unchanged.
    moved = [s.copy() for s in student]
    moved[0][0, 3:] += 50.0
    teacher_moved = [t.copy() for t in teacher]
    teacher_moved[1][0, 3:] -= 50.0
    again = distillation_losses(moved, teacher_moved, labels, mask, alpha, T)
    np.testing.assert_allclose(again["soft"].numpy(), soft, rtol=1e-5)
    # The student matching the teacher minimises the soft term: it is then the teacher's entropy.
    same = distillation_losses(teacher, teacher, labels, mask, alpha, T)["soft"].numpy()
    assert np.all(same <= soft + 1e-6)


def test_hard_term_is_the_models_own_loss():
    import tensorflow as tf

    from tfqa.training.loss import qa_window_losses
    from tfqa.modeling.checkpoints import tiny_distilbert

    model = tiny_distilbert(50, 16, dim=16, n_layers=1, n_heads=2)
    ids = tf.constant(np.random.default_rng(1).integers(5, 50, size=(3, 12)), tf.int32)
    mask = tf.ones_like(ids)
    start, end = tf.constant([0, 3, 11]), tf.constant([2, 5, 11])
    out = model({"input_ids": ids, "attention_mask": mask, "start_positions": start, "end_positions": end})
    np.testing.assert_allclose(qa_window_losses(start, end, out.start_logits, out.end_logits).numpy(),
                               np.asarray(out.loss).reshape(-1), rtol=1e-5)


@pytest.mark.parametrize("changes, message", [
    (dict(distill_alpha=1.5), "--distill_alpha must be in [0, 1] (got 1.5)"),
    (dict(distill_alpha=-0.1), "--distill_alpha must be in [0, 1]"),
    (dict(distill_temperature=0.0), "--distill_temperature must be positive (got 0.0)"),
    (dict(teacher_model="/nope/teacher"), "--teacher_model /nope/teacher: no such directory"),
])
def test_bad_distillation_settings_are_reported(changes, message):
    config = TrainConfig(train_file="squad/v1.1:train", predict_file="squad/v1.1:validation", **changes)
    assert any(message in problem for problem in config.validate())


def test_defaults_need_no_teacher():
    config = TrainConfig()
    assert (config.teacher_model, config.distill_alpha, config.distill_temperature) == ("", 0.5, 2.0)
    assert not [p for p in config.validate() if "distill" in p or "teacher" in p]


def test_a_teacher_with_another_vocab_is_refused(wordpiece_tokenizer, bpe_tokenizer):
    from tfqa.training.distill import TeacherError, check_tokenizers

    check_tokenizers(wordpiece_tokenizer, wordpiece_tokenizer, "same")  # the same vocab passes
    with pytest.raises(TeacherError, match=r"--teacher_model /t: its tokenizer does not match the student's"):
        check_tokenizers(wordpiece_tokenizer, bpe_tokenizer, "/t")


def _distill_step_losses(strategy, features, steps=3):
    import tensorflow as tf

    from tfqa.training.distill import DistillationModel
    from tfqa.modeling.checkpoints import tiny_distilbert
    from tfqa.training.datasets import train_dataset
    from tfqa.modeling.pipeline import input_names
    from tfqa.training.fitting import make_optimizer

    config = TrainConfig(per_replica_batch_size=8, learning_rate=3e-4, max_seq_length=64, doc_stride=16,
                         max_query_length=16)
    with strategy.scope():
        teacher = tiny_distilbert(200, 64, dim=32, n_layers=2, n_heads=2, seed=1)
        student = tiny_distilbert(200, 64, dim=16, n_layers=1, n_heads=2, seed=0, initializer_range=0.02)
        model = DistillationModel(student, teacher, alpha=0.7, temperature=2.0)
        model.compile(optimizer=make_optimizer(config, steps))
    losses = []
    model.fit(train_dataset(features, 8, seed=0, input_names=input_names(model)), epochs=steps, steps_per_epoch=1,
              verbose=0, callbacks=[tf.keras.callbacks.LambdaCallback(
                  on_epoch_end=lambda e, logs: losses.append((logs["loss"], logs["soft_loss"], logs["hard_loss"])))])
    return np.array(losses), [w.numpy() for w in teacher.weights]


@pytest.mark.slow
def test_two_replicas_match_one_and_the_teacher_stays_frozen(wordpiece_tokenizer):
    import tensorflow as tf

    from helpers import tiny_examples
    from tfqa import prepare_features

    assert len(tf.config.list_logical_devices("CPU")) == 2
    features = prepare_features(tiny_examples() * 3, wordpiece_tokenizer, max_seq_length=64, doc_stride=16,
                                max_query_length=16)
    one, teacher_one = _distill_step_losses(tf.distribute.MirroredStrategy(["/cpu:0"]), features)
    # Reduce through one device, not collectives: two MirroredStrategies that both use collective
    # ops in one process reuse the same collective instance keys, and the second one (the replica
    # test in test_training.py) then fails with "Shape mismatch in the collective instance".
    two, _ = _distill_step_losses(tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()), features)
    np.testing.assert_allclose(two, one, rtol=2e-3, atol=2e-4)
    from tfqa.modeling.checkpoints import tiny_distilbert

    untouched = tiny_distilbert(200, 64, dim=32, n_layers=2, n_heads=2, seed=1)
    for before, after in zip(untouched.weights, teacher_one):
        np.testing.assert_array_equal(before.numpy(), after)


# --- a real teacher → student run (tfqa.training.fitting.fit and train_and_evaluate) --------------------------------

TEACHER_STEPS, STUDENT_STEPS = 120, 60


@pytest.fixture(scope="module")
def smoke_teacher(tmp_path_factory):
    """A tiny teacher (dim 64, 2 layers) briefly fine-tuned on a third of the smoke corpus, saved like a run's output."""
    from bench.distill_smoke import prepare, train_teacher

    tokenizer, features, dev_features, dev, config = prepare(train_paragraphs=100, dev_paragraphs=40)
    teacher = train_teacher(tokenizer, features, config, TEACHER_STEPS)
    folder = tmp_path_factory.mktemp("teacher")
    teacher.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return dict(teacher=teacher, tokenizer=tokenizer, features=features, dev_features=dev_features, dev=dev,
                config=config, path=folder)


@pytest.mark.slow
def test_distilled_student_vs_the_same_student_without_teacher(smoke_teacher):
    from bench.distill_smoke import compare_students

    t = smoke_teacher
    result = compare_students(t["teacher"], t["tokenizer"], t["features"], t["dev_features"], t["dev"], t["config"],
                              STUDENT_STEPS, seed=0, alpha=0.5, temperature=2.0)
    print("\ndistillation smoke comparison:", json.dumps(result))
    distilled, baseline = result["distilled"], result["baseline"]
    # Robust: it trains, its combined and soft losses fall, and on the dev windows it moves towards the
    # teacher. Whether it then scores higher, or is closer to the teacher than the same student trained on
    # the labels alone, is not robust at this size and step count (python -m bench.distill_smoke, full smoke
    # corpus, 508 steps, one seed: dim-32 students stay on the no-answer plateau with or without the teacher;
    # a dim-64 1-layer student scored F1 99.35 distilled vs 98.91 without), so EM/F1 are only reported.
    assert all(np.isfinite(distilled["train_loss_per_epoch"]))
    assert distilled["train_loss_per_epoch"][-1] < distilled["train_loss_per_epoch"][0]
    assert distilled["train_soft_loss_per_epoch"][-1] < distilled["train_soft_loss_per_epoch"][0]
    assert distilled["soft_loss_to_teacher_after"] < distilled["soft_loss_to_teacher_before"]
    for scores in (result["teacher"], distilled, baseline):
        assert 0 <= scores["em"] <= scores["f1"] <= 100


def _tiny_files(folder):
    from tfqa.core.files import write_json_atomic
    from tfqa.core.synthetic import synthetic_squad

    return (str(write_json_atomic(folder / "train.json", synthetic_squad(12, seed=1))),
            str(write_json_atomic(folder / "dev.json", synthetic_squad(4, seed=2, name_offset=2000))))


@pytest.mark.slow
def test_train_and_evaluate_with_a_teacher_saves_the_student(smoke_teacher, tmp_path):
    import tensorflow as tf

    from tfqa.training.run import train_and_evaluate

    train, dev = _tiny_files(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(smoke_teacher["path"] / "vocab.txt", out / "smoke_vocab.txt")  # the student uses the teacher's vocab
    config = TrainConfig(train_file=train, predict_file=dev, output_dir=str(out), preset="smoke", seed=3,
                         version_2_with_negative=True, max_seq_length=64, doc_stride=24, max_query_length=16,
                         per_replica_batch_size=16, learning_rate=1e-3, num_train_epochs=1, export_dir="none",
                         teacher_model=str(smoke_teacher["path"]), distill_alpha=0.7, distill_temperature=3.0)
    results = train_and_evaluate(config)
    assert "f1" in results and len(results["epochs"]) == 1
    history = json.loads((out / "history.json").read_text())
    assert all(np.isfinite(history["epochs"][0]["step_losses"]))
    # tf_model.h5 is the student alone: it loads as a QA model, with one model's weights, which trained
    # (they differ from the teacher's, whose architecture the smoke student shares).
    from transformers import TFAutoModelForQuestionAnswering

    student = TFAutoModelForQuestionAnswering.from_pretrained(str(out))
    teacher = smoke_teacher["teacher"]
    assert len(student.weights) == len(teacher.weights)
    assert any(not np.allclose(a.numpy(), b.numpy()) for a, b in zip(student.weights, teacher.weights))
    assert json.loads((out / "tfqa_config.json").read_text())["teacher_model"] == str(smoke_teacher["path"])
    tf.keras.backend.clear_session()


@pytest.mark.slow
def test_train_and_evaluate_refuses_a_teacher_with_another_vocab(smoke_teacher, tmp_path):
    from tfqa.training.distill import TeacherError
    from tfqa.training.run import train_and_evaluate

    train, dev = _tiny_files(tmp_path)
    other_vocab = tmp_path / "run" / "smoke_vocab.txt"
    other_vocab.parent.mkdir()
    words = (smoke_teacher["path"] / "vocab.txt").read_text().splitlines()
    other_vocab.write_text("\n".join(words[:5] + words[5:][::-1]) + "\n")  # the same tokens, other ids
    config = TrainConfig(train_file=train, predict_file=dev, output_dir=str(other_vocab.parent), preset="smoke",
                         max_seq_length=64, doc_stride=24, max_query_length=16, export_dir="none",
                         teacher_model=str(smoke_teacher["path"]))
    with pytest.raises(TeacherError, match="its tokenizer does not match the student's"):
        train_and_evaluate(config)


# --- the keras_hub backend (Keras 3): tfqa.training.keras3_distill ---------------------------------------------------


def test_keras_hub_distillation_loss_is_the_transformers_paths_loss_and_trains_the_student_only(wordpiece_tokenizer):
    import keras
    import keras_hub

    from helpers import tiny_examples
    from tfqa import prepare_features
    from tfqa.modeling.keras_hub_qa import qa_model, tiny_distilbert
    from tfqa.modeling.pipeline import input_names
    from tfqa.training.distill_loss import distillation_losses
    from tfqa.training.keras3_distill import Keras3DistillationModel

    features = prepare_features(tiny_examples(), wordpiece_tokenizer, max_seq_length=32, doc_stride=8,
                                max_query_length=12)
    x = {k: features.model_inputs()[k][:6].astype(np.int32) for k in ("input_ids", "attention_mask", "token_type_ids")}
    x["attention_mask"][0, -3:] = 0  # padding in one window: masked out of both soft softmaxes
    y = {"start_positions": features.start_positions[:6], "end_positions": features.end_positions[:6]}
    # A BERT teacher (segment embeddings: it takes token_type_ids) and a DistilBERT student (it does not).
    keras.utils.set_random_seed(1)
    teacher = qa_model(keras_hub.models.BertBackbone(vocabulary_size=len(wordpiece_tokenizer), num_layers=1,
                                                     num_heads=2, hidden_dim=32, intermediate_dim=64,
                                                     max_sequence_length=32), seed=1)
    student = tiny_distilbert(len(wordpiece_tokenizer), 32, dim=16, n_layers=1, n_heads=2, seed=0)
    model = Keras3DistillationModel(student, teacher, alpha=0.7, temperature=3.0)
    assert input_names(model) == {"input_ids", "attention_mask", "token_type_ids"}  # what the datasets carry
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    logs = model.evaluate(x, y, batch_size=6, verbose=0, return_dict=True)

    def pair(out):
        return out["start_logits"], out["end_logits"]

    # The function the tf-keras DistillationModel's step computes, on these models' own logits.
    expected = distillation_losses(pair(student({k: x[k] for k in ("input_ids", "attention_mask")})), pair(teacher(x)),
                                   (y["start_positions"], y["end_positions"]), x["attention_mask"], 0.7, 3.0)
    for logged, key in (("loss", "loss"), ("soft_loss", "soft"), ("hard_loss", "hard")):
        np.testing.assert_allclose(logs[logged], float(np.mean(expected[key])), rtol=1e-5)
    assert model.predict(x, verbose=0)["start_logits"].shape == (6, 32)  # the student's
    teacher_before = [w.numpy() for w in teacher.weights]
    student_before = [w.numpy() for w in student.weights]
    model.fit(x, y, batch_size=6, epochs=2, verbose=0, shuffle=False)
    assert not teacher.trainable_weights and len(model.trainable_weights) == len(student.trainable_weights) > 0
    for before, after in zip(teacher_before, teacher.weights):
        np.testing.assert_array_equal(before, after.numpy())
    assert any(not np.allclose(b, a.numpy()) for b, a in zip(student_before, student.weights))


@pytest.mark.slow
def test_train_and_evaluate_on_keras_hub_distils_from_a_keras_hub_run_and_saves_the_student(tmp_path, monkeypatch):
    from tfqa.core.squad import load_squad
    from tfqa.core.vocab import tokenizer_from_vocab, train_word_vocab, write_vocab
    from tfqa.modeling.backend import backend_of, load_model
    from tfqa.modeling.keras_hub_backend import KERAS_HUB
    from tfqa.modeling.keras_hub_qa import tiny_distilbert
    from tfqa.training import distill
    from tfqa.training.run import train_and_evaluate

    train, dev = _tiny_files(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    texts = [t for e in load_squad(train) for t in (e.context, e.question)]
    vocab = out / "smoke_vocab.txt"  # the smoke student's vocab, which the teacher shares
    words = train_word_vocab(texts, 2000).vocab
    write_vocab(sorted(words, key=words.get), vocab)
    tokenizer = tokenizer_from_vocab(vocab, token_type_ids=False)
    teacher_dir = tmp_path / "teacher"  # a keras_hub run's model folder: model.keras + the tokenizer
    KERAS_HUB.save(tiny_distilbert(len(tokenizer), 64, seed=5), tokenizer, teacher_dir)
    saved_teacher = [w.numpy() for w in load_model(str(teacher_dir))[0].weights]
    loaded = []
    load_teacher = distill.load_teacher
    monkeypatch.setattr(distill, "load_teacher", lambda *a, **k: loaded.append(load_teacher(*a, **k)) or loaded[-1])

    config = TrainConfig(train_file=train, predict_file=dev, output_dir=str(out), preset="smoke", seed=3,
                         backend="keras_hub", version_2_with_negative=True, max_seq_length=64, doc_stride=24,
                         max_query_length=16, per_replica_batch_size=8, learning_rate=1e-3, num_train_epochs=1,
                         export_dir="none", teacher_model=str(teacher_dir), distill_alpha=0.7,
                         distill_temperature=3.0)
    results = train_and_evaluate(config)
    assert "f1" in results and len(results["epochs"]) == 1
    history = json.loads((out / "history.json").read_text())
    assert history["epochs"][0]["step_losses"] and all(np.isfinite(history["epochs"][0]["step_losses"]))
    (teacher,) = loaded
    assert backend_of(teacher).name == "keras_hub"
    for before, after in zip(saved_teacher, teacher.weights, strict=True):  # frozen through fit
        np.testing.assert_array_equal(before, after.numpy())
    # The run is a plain keras_hub run of the student alone, which trained away from its teacher's weights
    # (the smoke student shares the teacher's architecture).
    assert (out / "model.keras").is_file() and not (out / "tf_model.h5").exists()
    student, _ = load_model(str(out))
    assert backend_of(student).name == "keras_hub" and len(student.weights) == len(saved_teacher)
    assert any(not np.allclose(a.numpy(), b) for a, b in zip(student.weights, saved_teacher))


def test_a_pytorch_checkpoint_teaches_a_keras_hub_student_through_keras_hub(tmp_path, wordpiece_tokenizer):
    from safetensors.numpy import save_file

    from helpers import distilbert_pytorch_tensors
    from tfqa.modeling.backend import backend_of
    from tfqa.modeling.keras_hub_qa import tiny_distilbert
    from tfqa.training.distill import load_teacher, teacher_problem

    vocab = len(wordpiece_tokenizer)
    checkpoint = tmp_path / "distilbert_qa"  # a Hugging Face checkpoint saved by PyTorch: config.json + safetensors
    checkpoint.mkdir()
    source = tiny_distilbert(vocab, 16, dim=16, n_layers=1, n_heads=2)
    save_file(distilbert_pytorch_tensors(source), str(checkpoint / "model.safetensors"))
    (checkpoint / "config.json").write_text(json.dumps(
        {"model_type": "distilbert", "vocab_size": vocab, "n_layers": 1, "n_heads": 2, "dim": 16, "hidden_dim": 32,
         "dropout": 0.0, "max_position_embeddings": 16, "activation": "gelu"}))
    wordpiece_tokenizer.save_pretrained(str(checkpoint))
    assert teacher_problem(str(checkpoint), "keras_hub") == ""
    teacher = load_teacher(str(checkpoint), wordpiece_tokenizer, backend="keras_hub")
    assert backend_of(teacher).name == "keras_hub" and not teacher.trainable_weights


def test_keras_hub_accepts_a_teacher_and_still_refuses_accumulation_with_one(tmp_path):
    config = TrainConfig(train_file="squad/v1.1:train", predict_file="squad/v1.1:validation", backend="keras_hub",
                         teacher_model=str(tmp_path))
    assert config.validate() == []
    assert config.replace(gradient_accumulation_steps=2).validate() == [
        "--gradient_accumulation_steps cannot be combined with --teacher_model"]


def test_a_teacher_of_the_other_keras_is_refused_in_one_line_before_the_run_starts(tmp_path):
    from tfqa.modeling.checkpoints import tiny_distilbert
    from tfqa.training.distill import TeacherError, teacher_problem
    from tfqa.training.run import train_and_evaluate

    keras3_run = tmp_path / "keras_hub_run"
    keras3_run.mkdir()
    (keras3_run / "model.keras").write_bytes(b"")  # the file names decide: nothing is loaded to refuse
    tf_keras_run = tmp_path / "transformers_run"
    tiny_distilbert(50, 16, dim=16, n_layers=1, n_heads=2).save_pretrained(str(tf_keras_run))
    assert teacher_problem(str(keras3_run), "keras_hub") == teacher_problem(str(tf_keras_run), "transformers") == ""
    refusals = {
        (keras3_run, "transformers"): f"--teacher_model {keras3_run}: a keras_hub run (model.keras, Keras 3) cannot "
                                      "teach a --backend transformers (tf-keras) student; pass --backend keras_hub",
        (tf_keras_run, "keras_hub"): f"--teacher_model {tf_keras_run}: a transformers model (tf_model.h5, tf-keras) "
                                     "cannot teach a --backend keras_hub (Keras 3) student; convert it: python -m "
                                     f"tfqa convert --model {tf_keras_run} --to keras_hub --output DIR, then pass "
                                     "--teacher_model DIR",
    }
    for (teacher, backend), message in refusals.items():
        assert teacher_problem(str(teacher), backend) == message
        out = tmp_path / f"run_{backend}"
        config = TrainConfig(train_file="missing.json", output_dir=str(out), backend=backend,
                             teacher_model=str(teacher), preset="smoke")
        with pytest.raises(TeacherError) as refused:
            train_and_evaluate(config)
        assert str(refused.value) == message and refused.value.exit_status == 2
        assert not out.exists()  # refused before the data loads and anything is written


def test_train_keras_refuses_a_teacher_of_the_other_keras_before_writing_anything(tmp_path, capsys):
    from tfqa.apps.train import train_main
    from tfqa.modeling.checkpoints import tiny_distilbert

    teacher = tmp_path / "transformers_run"
    tiny_distilbert(50, 16, dim=16, n_layers=1, n_heads=2).save_pretrained(str(teacher))
    out = tmp_path / "student"
    status = train_main(["--preset", "smoke", "--backend", "keras_hub", "--teacher_model", str(teacher),
                         "--output_dir", str(out)])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.strip().splitlines()[-1] == (
        f"train_keras.py: error: --teacher_model {teacher}: a transformers model (tf_model.h5, tf-keras) cannot "
        f"teach a --backend keras_hub (Keras 3) student; convert it: python -m tfqa convert --model {teacher} "
        "--to keras_hub --output DIR, then pass --teacher_model DIR")
    assert not out.exists()  # not even the smoke preset's data/
