"""The demo's first stage (rule pretrain_backbone): it learns, never sees val images, and its
file loads through the code that loads BLIP-2's own for `pretrain`."""

import json

import pytest
import torch

from cirflow.errors import CirflowError
from cirflow.model.config import ModelConfig
from cirflow.model.factory import build_model
from cirflow.model.presets import get_preset
from cirflow.model.sprc import SPRC
from cirflow.train.pretrain import BLIP2_PREFIXES, PretrainSettings, pretrain_backbone


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    from cirflow.data.demo import DemoSpec, generate_demo

    root = tmp_path_factory.mktemp("demo")
    generate_demo(root, DemoSpec(0, 240, 48, 8), workers=2, progress=False)
    return root


@pytest.fixture(scope="module")
def pretrained(demo_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("backbone")
    # The demo's recipe (config.yaml): contrast + masked words, the ViT frozen at its init.
    settings = PretrainSettings(
        epochs=16,
        families_per_batch=6,
        learning_rate=2e-3,
        masked_words=1.0,
        train_vit=False,
        threads=2,
        progress=False,
    )
    result = pretrain_backbone(demo_root, out / "backbone.pth", out / "metrics.json", settings)
    return out, result


def test_a_small_pretraining_beats_chance_on_val(pretrained):
    out, result = pretrained
    assert result == json.loads((out / "metrics.json").read_text())
    assert result["split"] == "val" and result["images"] == 72
    # Image -> description among all val descriptions (a random model: chance). Within a family
    # (one attribute apart) it stays near chance at this size, and is reported, not asserted.
    assert result["image_to_text_r1"] > 3 * result["image_to_text_r1_chance"], result
    assert 0 <= result["in_family_r1"] <= 100
    for column in ("loss_itc", "loss_words"):
        losses = [row[column] for row in result["history"]]
        assert losses[-1] < losses[0], column


def test_the_file_has_blip2s_layout_and_loads_as_the_tiny_preset(pretrained):
    out, _ = pretrained
    state = torch.load(out / "backbone.pth", weights_only=True)["model"]
    assert state and all(k.startswith(BLIP2_PREFIXES) for k in state)
    assert not any(k.startswith(("prompt_tokens", "region_proj")) for k in state)
    model = build_model(ModelConfig("tiny", weights=str(out / "backbone.pth")))
    assert model.freeze_vit and not any(p.requires_grad for p in model.visual_encoder.parameters())
    for key in ("visual_encoder.blocks.0.attn.qkv.weight", "query_tokens", "text_proj.weight"):
        torch.testing.assert_close(model.state_dict()[key], state[key])


def test_pretraining_reads_train_images_only(demo_root, pretrained):
    out, result = pretrained
    from cirflow.data.cirr import CirrDataset

    assert result["train_images"] == len(CirrDataset(demo_root, "train").images)


def test_a_missing_first_stage_file_names_the_rule(tmp_path):
    with pytest.raises(CirflowError, match="pretrain_backbone|does not exist"):
        build_model(ModelConfig("tiny", weights=str(tmp_path / "absent.pth")))


def test_masked_words_hide_only_words_and_at_least_one_per_description():
    from cirflow.train.pretrain import mask_words

    ids = torch.tensor([[3, 10, 11, 12, 13, 4, 0], [3, 20, 4, 0, 0, 0, 0]])
    attention = (ids != 0).long()
    masked, labels = mask_words(ids, attention, 0.3, 5, torch.Generator().manual_seed(0))
    hidden = masked == 5
    assert hidden.any(dim=1).all()  # the one-word description too
    # [CLS], [SEP] and padding are never masked; labels are the original ids, -100 elsewhere.
    assert not hidden[:, 0].any() and not hidden[0, 5] and not hidden[1, 2:].any()
    assert torch.equal(labels[hidden], ids[hidden]) and (labels[~hidden] == -100).all()
    assert torch.equal(masked[~hidden], ids[~hidden])
    # Masking everything masks exactly the words.
    masked, _ = mask_words(ids, attention, 1.0, 5, torch.Generator().manual_seed(0))
    words = torch.tensor([[0, 1, 1, 1, 1, 0, 0], [0, 1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(masked == 5, words)


def test_the_masked_word_loss_reaches_the_image_only_through_the_queries():
    from cirflow.train.pretrain import MaskedWordHead, MaskedWords

    torch.manual_seed(0)
    model = SPRC(get_preset("tiny_scratch"))
    head = MaskedWordHead(model)
    images = torch.randn(2, 3, 64, 64)
    ids, attention = model.tokenize(["a small red star at the top", "a big blue circle"])

    def loss_of(images):
        embeds = model.image_tokens(images)
        gen = torch.Generator().manual_seed(0)
        words = MaskedWords(head, 0.3, model.tokenizer.mask_token_id, gen)
        return words.loss(model, embeds, ids, attention)

    loss = loss_of(images)
    loss.backward()
    # The words are predicted from the image: the ViT and the query tokens get its gradient.
    assert model.visual_encoder.patch_embed.proj.weight.grad.abs().sum() > 0
    assert model.query_tokens.grad.abs().sum() > 0
    # Another image changes the prediction (the text layers see it, through the queries).
    with torch.no_grad():
        assert not torch.isclose(loss_of(torch.randn(2, 3, 64, 64)), loss.detach())


def test_train_vit_false_keeps_the_vits_seeded_init_and_trains_the_qformer(demo_root, tmp_path):
    from cirflow.train.rng import seed_everything

    settings = PretrainSettings(
        epochs=1,
        families_per_batch=6,
        train_vit=False,
        masked_words=1.0,
        seed=3,
        threads=2,
        progress=False,
    )
    pretrain_backbone(demo_root, tmp_path / "backbone.pth", tmp_path / "metrics.json", settings)
    saved = torch.load(tmp_path / "backbone.pth", weights_only=True)["model"]
    seed_everything(3)
    init = SPRC(get_preset("tiny_scratch")).state_dict()
    vit = [k for k in saved if k.startswith("visual_encoder.")]
    assert vit and all(torch.equal(saved[k], init[k]) for k in vit)
    assert not torch.equal(saved["query_tokens"], init["query_tokens"])


def test_a_frozen_vit_runs_once_and_the_steps_read_its_tokens(demo_root):
    from cirflow.data.tables import model_input
    from cirflow.data.transforms import normalize
    from cirflow.train.pretrain import prepare

    frozen = prepare(demo_root, PretrainSettings(train_vit=False, progress=False), "cpu")
    idx = list(range(12))
    cached, *_ = frozen.train.batch(idx)
    # fp16 ViT tokens (as the image-features stage stores them), not pixels.
    assert cached.dtype == torch.float16 and cached.dim() == 3
    pixels = frozen.train.table.get(idx)  # decoded again from the files
    with torch.no_grad():
        expected = frozen.model.image_tokens(normalize(pixels))
        got = frozen.model.image_tokens(model_input(cached, "cpu"))
    torch.testing.assert_close(got, expected, atol=0.02, rtol=0)
    # A ViT that trains reads pixels at every step.
    trained = prepare(demo_root, PretrainSettings(train_vit=True, progress=False), "cpu")
    assert trained.train.batch(idx)[0].dtype == torch.uint8
