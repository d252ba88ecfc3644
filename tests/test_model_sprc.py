"""SPRC on LAVIS components, tiny preset: shapes, the three losses, learning, checkpoints."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from cirflow.errors import CirflowError
from cirflow.model.factory import load_model
from cirflow.model.presets import TINY_VOCAB_FILE, check_weights_available, get_preset
from cirflow.model.sprc import SPRC, contrastive_loss
from cirflow.model.state_dicts import SPRC_KEY
from cirflow.model.vocab import build_tiny_vocab, vocab_text

CAPTIONS = [
    "make the red circle blue",
    "remove the small star",
    "move the green square to the top left corner",
    "add a yellow triangle on the right",
]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return SPRC(get_preset("tiny_scratch"), "aux")


@pytest.fixture(scope="module")
def batch(tiny):
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(4, 3, 64, 64, generator=g)
    tgt = torch.randn(4, 3, 64, 64, generator=g)
    ids, mask = tiny.tokenize(CAPTIONS)
    return ref, tgt, ids, mask


def test_vocab_file_is_up_to_date():
    """The shipped tiny vocabulary equals what the demo captions and descriptions need
    (python -m cirflow.model.vocab)."""
    assert TINY_VOCAB_FILE.read_text() == vocab_text(build_tiny_vocab())


def test_tokenizer_knows_every_demo_word(tiny):
    from cirflow.data.demo import caption_vocabulary, description_vocabulary

    words = sorted({*caption_vocabulary(), *description_vocabulary()})
    ids = tiny.tokenizer(" ".join(words))["input_ids"]
    assert tiny.tokenizer.unk_token_id not in ids
    assert len(ids) == len(words) + 2  # one token per word + [CLS] [SEP]
    # A word outside the demo still tokenises into pieces, not [UNK].
    assert tiny.tokenizer.unk_token_id not in tiny.tokenizer("zebra")["input_ids"]


def test_lavis_components(tiny):
    from cirflow.model.lavis_modules import BertLMHeadModel, Blip2Base, EvaVisionTransformer

    assert Blip2Base.__module__ == "lavis.models.blip2_models.blip2"  # LAVIS's own classes
    assert EvaVisionTransformer.__module__ == "lavis.models.eva_vit"
    assert isinstance(tiny, Blip2Base)
    assert isinstance(tiny.visual_encoder, EvaVisionTransformer)
    assert isinstance(tiny.Qformer, BertLMHeadModel)
    assert tiny.query_tokens.shape == (1, 8, 96) and tiny.prompt_tokens.shape == (1, 8, 96)
    n = sum(p.numel() for p in tiny.parameters())
    assert 0.5e6 < n < 1.5e6


def test_shapes(tiny, batch):
    ref, tgt, ids, mask = batch
    tiny.eval()
    with torch.no_grad():
        e = tiny.image_tokens(tgt)
        assert e.shape == (4, 1 + 8 * 8, 96)  # CLS + 8x8 patches of 64 px / patch 8
        k = tiny.target_features(e)
        assert k.shape == (4, 8, 64)
        assert torch.allclose(k.norm(dim=-1), torch.ones(4, 8), atol=1e-5)
        p = tiny.fusion_prompt(tiny.image_tokens(ref), ids, mask)
        assert p.shape == (4, 8, 96)
        q = tiny.compose(p, ids, mask)
        assert q.shape == (4, 64) and torch.allclose(q.norm(dim=-1), torch.ones(4), atol=1e-5)
        u = tiny.prompt_text_query(ids, mask)
        assert u.shape == (4, 64)
    tiny.train()


def test_losses_follow_the_equations(tiny, batch):
    ref, tgt, ids, mask = batch
    tiny.eval()  # no dropout: recompute each loss by hand from the parts
    with torch.no_grad():
        losses = tiny(ref_images=ref, target_images=tgt, input_ids=ids, attention_mask=mask)
        assert set(losses) == {"loss_itc", "loss_rtc", "loss_align"}
        k = tiny.target_features(tiny.image_tokens(tgt))
        p = tiny.fusion_prompt(tiny.image_tokens(ref), ids, mask)
        q = tiny.compose(p, ids, mask)
        u = tiny.prompt_text_query(ids, mask)
        temp = tiny.temp
        labels = torch.arange(4)
        s = torch.stack([torch.stack([(k[j] @ q[i]).max() for j in range(4)]) for i in range(4)])
        assert losses["loss_itc"] == pytest.approx(
            float(F.cross_entropy(s / temp, labels)), rel=1e-5
        )
        s_u = torch.stack([torch.stack([(k[j] @ u[i]).max() for j in range(4)]) for i in range(4)])
        assert losses["loss_rtc"] == pytest.approx(
            float(F.cross_entropy(s_u / temp, labels)), rel=1e-5
        )
        align = F.mse_loss(p.mean(1), tiny.prompt_tokens.mean(1).expand(4, -1))
        assert losses["loss_align"] == pytest.approx(float(align), rel=1e-5)
        for v in losses.values():
            assert v.ndim == 0 and math.isfinite(float(v))
    tiny.train()


def test_prompt_paths_see_no_image_and_use_their_inputs(tiny, batch):
    """q depends on the image only through P; u depends on prompt_tokens and the caption."""
    ref, _, ids, mask = batch
    tiny.eval()
    with torch.no_grad():
        p = tiny.fusion_prompt(tiny.image_tokens(ref), ids, mask)
        q1 = tiny.compose(p, ids, mask)
        assert not torch.allclose(q1, tiny.compose(p + 0.5, ids, mask))
        ids2, mask2 = tiny.tokenize(["make the blue circle red"] * 4)
        assert not torch.allclose(tiny.compose(p, ids2, mask2), q1)
        u1 = tiny.prompt_text_query(ids, mask)
        saved = tiny.prompt_tokens.data.clone()
        tiny.prompt_tokens.data += 0.5
        u2 = tiny.prompt_text_query(ids, mask)
        tiny.prompt_tokens.data.copy_(saved)
        assert not torch.allclose(u1, u2)
        # Padding does not change a caption's query (attention mask honoured).
        one_ids, one_mask = tiny.tokenize([CAPTIONS[1]])
        padded = torch.cat([one_ids, torch.zeros(1, 5, dtype=torch.long)], 1)
        padded_mask = torch.cat([one_mask, torch.zeros(1, 5, dtype=torch.long)], 1)
        u_a = tiny.prompt_text_query(one_ids, one_mask)
        u_b = tiny.prompt_text_query(padded, padded_mask)
        assert torch.allclose(u_a, u_b, atol=1e-5)
    tiny.train()


def test_one_text_pass_gives_compose_and_prompt_query(tiny, batch):
    """Training stacks q's and u's text-only passes into one batch: the same vectors as the two
    passes the evaluation runs one at a time (each row at its own readout position)."""
    ref, _, ids, mask = batch
    tiny.eval()
    with torch.no_grad():
        p = tiny.fusion_prompt(tiny.image_tokens(ref), ids, mask)
        q, u = tiny.compose_and_prompt_query(p, ids, mask)
        torch.testing.assert_close(q, tiny.compose(p, ids, mask), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(u, tiny.prompt_text_query(ids, mask), atol=1e-5, rtol=1e-5)
    tiny.train()


def test_duplicate_targets_are_not_negatives():
    sim = torch.tensor([[0.9, 0.9, 0.1], [0.9, 0.9, 0.1], [0.1, 0.2, 0.8]])
    plain = contrastive_loss(sim, torch.tensor(0.1))
    masked = contrastive_loss(sim, torch.tensor(0.1), torch.tensor([7, 7, 3]))
    assert masked < plain
    assert contrastive_loss(sim, torch.tensor(0.1), torch.tensor([1, 2, 3])) == pytest.approx(
        float(plain)
    )


def test_loss_falls_on_a_fixed_batch(batch):
    torch.manual_seed(1)
    model = SPRC(get_preset("tiny_scratch"))
    ref, tgt, ids, mask = batch
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    def total():
        losses = model(ref_images=ref, target_images=tgt, input_ids=ids, attention_mask=mask)
        return losses["loss_itc"] + 0.4 * losses["loss_rtc"] + 0.4 * losses["loss_align"]

    first = float(total().detach())
    for _ in range(15):
        loss = total()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        last = float(total())
    assert last < 0.5 * first, (first, last)


def test_frozen_vit_gets_no_gradient_and_no_optimizer_slot(batch):
    torch.manual_seed(2)
    model = SPRC(get_preset("tiny_scratch", freeze_vit=True))
    ref, tgt, ids, mask = batch
    vit_before = {k: v.clone() for k, v in model.visual_encoder.state_dict().items()}
    ln_before = model.ln_vision.weight.detach().clone()
    trainable = [p for _, p in model.trainable_named_parameters()]
    assert not any(n.startswith("visual_encoder.") for n, _ in model.trainable_named_parameters())
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    model.train()
    assert not model.visual_encoder.training  # LAVIS's disabled_train keeps it in eval mode
    for _ in range(3):
        loss = sum(
            model(ref_images=ref, target_images=tgt, input_ids=ids, attention_mask=mask).values()
        )
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is None for p in model.visual_encoder.parameters())
        opt.step()
    for k, v in model.visual_encoder.state_dict().items():
        assert torch.equal(v, vit_before[k]), k
    assert not torch.equal(model.ln_vision.weight, ln_before)  # ln_vision is trained (SPRC)


def test_published_sprc_checkpoint_format_loads(tmp_path, batch):
    torch.manual_seed(3)
    src = SPRC(get_preset("tiny_scratch"))
    sd = {f"module.{k}": v for k, v in src.state_dict().items()}  # as saved from DDP
    sd["module.itm_head.weight"] = torch.zeros(2, 96)  # unused SPRC heads are ignored
    sd["module.Qformer.cls.predictions.bias"] = torch.zeros(10)
    path = tmp_path / "sprc_cirr.pt"
    torch.save({"epoch": 3, SPRC_KEY: sd}, path)
    model, _ = load_model(path, "tiny_scratch")
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    ref, tgt, ids, mask = batch
    src.eval()
    model.eval()
    with torch.no_grad():
        assert torch.allclose(
            src.query_features(ref, ids, mask), model.query_features(ref, ids, mask)
        )
    # Without the backbone the file cannot be read; a wrong backbone is named as such.
    with pytest.raises(CirflowError, match="backbone"):
        load_model(path)
    small = {k: v for k, v in sd.items() if "Qformer" not in k}
    torch.save({SPRC_KEY: small}, path)
    with pytest.raises(CirflowError, match="missing"):
        load_model(path, "tiny_scratch")
    torch.save({"something": 1}, path)
    with pytest.raises(CirflowError, match="not a cirflow checkpoint"):
        load_model(path, "tiny_scratch")


def test_pretrain_presets_fail_fast_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    preset = get_preset("pretrain")
    assert preset.image_size == 224 and preset.num_query_token == 32 and preset.freeze_vit
    assert preset.vit_grid == 16
    with pytest.raises(CirflowError, match="eva_vit_g.pth"):
        check_weights_available(preset)
    with pytest.raises(CirflowError, match="clip_vit_L.pth"):
        check_weights_available(get_preset("pretrain_vitL"))
    with pytest.raises(CirflowError, match="unknown model preset"):
        get_preset("huge")


def test_amp_flag_is_a_no_op_on_cpu(batch):
    torch.manual_seed(4)
    model = SPRC(dataclasses.replace(get_preset("tiny_scratch")))
    ref, tgt, ids, mask = batch
    model.eval()
    with torch.no_grad():
        a = model(ref_images=ref, target_images=tgt, input_ids=ids, attention_mask=mask)["loss_itc"]
        model.use_amp = True
        b = model(ref_images=ref, target_images=tgt, input_ids=ids, attention_mask=mask)["loss_itc"]
    assert float(a) == float(b)


def test_reference_images_as_extra_negatives(tiny, batch):
    """negatives: batch_images — the batch's references join the candidates, false ones masked."""
    ref, tgt, ids, mask = batch
    tiny.eval()
    t_ids = torch.tensor([0, 1, 2, 3])
    r_ids = torch.tensor([4, 0, 5, 6])  # row 1's reference is row 0's target
    with torch.no_grad():
        losses = tiny(
            ref_images=ref,
            target_images=tgt,
            input_ids=ids,
            attention_mask=mask,
            target_ids=t_ids,
            reference_ids=r_ids,
            reference_negatives=True,
        )
        e_r = tiny.image_tokens(ref)
        k = torch.cat([tiny.target_features(tiny.image_tokens(tgt)), tiny.target_features(e_r)])
        q = tiny.compose(tiny.fusion_prompt(e_r, ids, mask), ids, mask)
        sim = torch.einsum("id,jkd->ijk", q, k).amax(-1) / tiny.temp  # (4, 8)
        cols = [0, 1, 2, 3, 4, 0, 5, 6]
        for i in range(4):
            for j in range(8):
                repeated = cols[j] in cols[:j]
                if j != i and (cols[j] == t_ids[i] or cols[j] == r_ids[i] or repeated):
                    sim[i, j] = float("-inf")
        expect = F.cross_entropy(sim, torch.arange(4))
    assert float(losses["loss_itc"]) == pytest.approx(float(expect), rel=1e-5)
    tiny.train()


def test_rtc_positions_run_over_the_interleaved_sequence(tiny, batch):
    """The encoder input of u is LayerNorm(E + pos) over [CLS] ⊕ prompt_tokens ⊕ T[1:], positions
    0..nq+L-1 (SPRC's Q-Former, no_img): built here from the embedding tables, by hand."""
    _, _, ids, mask = batch
    emb = tiny.Qformer.bert.embeddings
    nq, length = tiny.prompt_tokens.shape[1], ids.shape[1]
    seen = []
    hook = tiny.Qformer.bert.encoder.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(args[0] if args else kwargs["hidden_states"]),
        with_kwargs=True,
    )
    tiny.eval()
    try:
        with torch.no_grad():
            tiny.prompt_text_query(ids, mask)
            words = emb.word_embeddings.weight[ids]  # (B, L, H)
            prompt = tiny.prompt_tokens[0].expand(ids.shape[0], -1, -1)
            sequence = torch.cat([words[:, :1], prompt, words[:, 1:]], dim=1)
            positions = emb.position_embeddings.weight[: nq + length]  # CLS 0, prompts 1..nq
            expected = F.layer_norm(
                sequence + positions,
                (sequence.shape[-1],),
                emb.LayerNorm.weight,
                emb.LayerNorm.bias,
                emb.LayerNorm.eps,
            )
            assert len(seen) == 1 and seen[0].shape == expected.shape
            assert torch.allclose(seen[0], expected, atol=1e-6)
            # Positions make the prompt tokens' order matter (without them u would not change).
            u = tiny.prompt_text_query(ids, mask)
            saved = tiny.prompt_tokens.data.clone()
            tiny.prompt_tokens.data = saved.flip(1)
            flipped = tiny.prompt_text_query(ids, mask)
            tiny.prompt_tokens.data.copy_(saved)
            assert not torch.allclose(u, flipped, atol=1e-4)
    finally:
        hook.remove()
        tiny.train()
