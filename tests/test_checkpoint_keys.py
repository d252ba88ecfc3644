"""Backbones built as the published checkpoints hold them, and strict key checks when loading
BLIP-2, SPRC and cirflow files (synthetic state dicts from the tiny preset; nothing downloaded)."""

import dataclasses

import pytest
import torch

from cirflow.errors import CirflowError
from cirflow.model.factory import load_blip2_file, load_model, load_vit_file
from cirflow.model.lavis_parts import build_vit
from cirflow.model.presets import get_preset
from cirflow.model.sprc import SPRC
from cirflow.model.state_dicts import SPRC_KEY, load_state


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(0)
    return SPRC(get_preset("tiny_scratch"))


def _without(sd: dict, prefix: str) -> dict:
    out = {k: v for k, v in sd.items() if not k.startswith(prefix)}
    assert len(out) < len(sd), prefix
    return out


def _same_weights(model, sd):
    for k, v in sd.items():
        if k in model.state_dict():
            assert torch.equal(model.state_dict()[k], v), k


# -- the ViT-L depth ------------------------------------------------------------------------------


def test_vitL_has_the_23_blocks_of_sprcs_lavis_not_the_21_of_lavis_1_0_2():
    from cirflow.model.lavis_modules import ClipVisionTransformer as ClipViT

    with torch.device("meta"):
        vit = build_vit(get_preset("pretrain_vitL"))
        # What the installed LAVIS's create_clip_vit_L builds (layers=22): one block fewer.
        lavis_vit = ClipViT(
            input_resolution=224,
            patch_size=14,
            width=1024,
            layers=22,
            heads=16,
            use_grad_checkpointing=False,
        )
    assert len(vit.transformer.resblocks) == 23
    assert len(lavis_vit.transformer.resblocks) == 21
    assert vit.num_features == 1024 and vit.positional_embedding.shape == (1 + 16 * 16, 1024)


def _small_clip(depth: int):
    return dataclasses.replace(
        get_preset("pretrain_vitL"),
        name="clip_small",
        image_size=28,
        vit_width=32,
        vit_heads=2,
        vit_depth=depth,
        random_init=True,
    )


def test_vit_file_must_hold_every_block_of_the_built_vit(tmp_path, caplog):
    torch.manual_seed(0)
    preset = _small_clip(3)
    deeper = build_vit(_small_clip(4)).state_dict()  # a file with one block more
    path = tmp_path / "clip_vit.pth"
    torch.save(deeper, path)
    vit = build_vit(preset)
    with caplog.at_level("INFO"):
        load_vit_file(vit, str(path), preset)
    assert torch.equal(
        vit.transformer.resblocks[2].mlp.c_fc.weight,
        deeper["transformer.resblocks.2.mlp.c_fc.weight"],
    )
    assert "transformer.resblocks.3.*" in caplog.text  # the unused deeper block is named
    torch.save({k: v for k, v in deeper.items() if ".resblocks.2." not in k}, path)
    with pytest.raises(CirflowError, match=r"lacks \d+ weights.*transformer\.resblocks\.2\.\*"):
        load_vit_file(build_vit(preset), str(path), preset)


# -- published SPRC files ---------------------------------------------------------------------------


def test_sprc_file_with_module_prefix_and_unused_heads_loads(tmp_path, source):
    sd = {f"module.{k}": v for k, v in source.state_dict().items()}
    sd["module.itm_head.weight"] = torch.zeros(2, 96)
    sd["module.itm_head.bias"] = torch.zeros(2)
    sd["module.Qformer.cls.predictions.bias"] = torch.zeros(10)
    path = tmp_path / "sprc.pt"
    torch.save({"epoch": 3, SPRC_KEY: sd}, path)
    model, _ = load_model(path, "tiny_scratch")
    _same_weights(model, source.state_dict())


def test_sprc_file_missing_one_vit_block_fails(tmp_path, source):
    sd = _without(source.state_dict(), "visual_encoder.blocks.1.")
    path = tmp_path / "sprc.pt"
    torch.save({SPRC_KEY: sd}, path)
    with pytest.raises(CirflowError, match=r"missing from the file: visual_encoder\.blocks\.1\.\*"):
        load_model(path, "tiny_scratch")
    # A frozen ViT may be absent as a whole (it comes from its own file), never in part.
    torch.manual_seed(1)
    frozen = SPRC(get_preset("tiny_scratch", freeze_vit=True))
    with pytest.raises(CirflowError, match=r"visual_encoder\.blocks\.1\.\*"):
        load_state(frozen, sd, "sprc.pt", kind="sprc")
    load_state(frozen, _without(source.state_dict(), "visual_encoder."), "sprc.pt", kind="sprc")
    _same_weights(frozen, _without(source.state_dict(), "visual_encoder."))


def test_extra_key_fails_and_is_named(tmp_path, source):
    sd = dict(source.state_dict())
    sd["Qformer.bert.encoder.layer.3.output.dense.weight"] = torch.zeros(96, 192)
    sd["visual_encoder.blocks.3.norm1.weight"] = torch.zeros(96)
    path = tmp_path / "sprc.pt"
    torch.save({SPRC_KEY: sd}, path)
    with pytest.raises(
        CirflowError,
        match=r"2 unexpected keys in the file: Qformer\.bert\.encoder\.layer\.3\.output\.dense\.weight, "
        r"visual_encoder\.blocks\.3\.norm1\.weight",
    ):
        load_model(path, "tiny_scratch")


# -- cirflow files ---------------------------------------------------------------------------------


def test_cirflow_files_region_head_only_where_allowed(source):
    torch.manual_seed(2)
    stage2 = SPRC(get_preset("tiny_scratch"), "aux")
    sd = source.state_dict()  # a stage-1 file: no region head
    with pytest.raises(CirflowError, match="region_proj"):
        load_state(stage2, sd, "stage1/best.pt", kind="cirflow")
    load_state(
        stage2, sd, "stage1/best.pt", kind="cirflow", allow_missing=("region_proj.", "region_temp")
    )
    _same_weights(stage2, sd)
    with pytest.raises(
        CirflowError, match=r"unexpected keys in the file: region_proj\.\* \(2 keys\), region_temp"
    ):
        load_state(source, stage2.state_dict(), "stage2/best.pt", kind="cirflow")
    # The unused SPRC heads are tolerated, position_ids may be missing.
    extra = {**sd, "itm_head.weight": torch.zeros(2, 96)}
    load_state(source, _without(extra, "Qformer.bert.embeddings.position_ids"), "x", kind="cirflow")


# -- BLIP-2 files ----------------------------------------------------------------------------------


def test_blip2_file_keys_are_checked(tmp_path, source):
    blip2 = {
        k: v
        for k, v in source.state_dict().items()
        if not k.startswith(("prompt_tokens", "visual_encoder."))
    }
    blip2["itm_head.weight"] = torch.zeros(2, 96)
    blip2["Qformer.cls.predictions.transform.dense.weight"] = torch.zeros(96, 96)
    path = tmp_path / "blip2.pth"
    torch.save({"model": blip2}, path)
    torch.manual_seed(3)
    model = SPRC(get_preset("tiny_scratch"), "aux")
    load_blip2_file(model, str(path))  # no prompt tokens, no region head, no ViT: fine
    _same_weights(model, blip2)

    torch.save({"model": {**blip2, "Qformer.bert.pooler.dense.weight": torch.zeros(96, 96)}}, path)
    with pytest.raises(
        CirflowError, match=r"blip2 file.*unexpected.*Qformer\.bert\.pooler\.dense\.weight"
    ):
        load_blip2_file(model, str(path))
    torch.save({"model": _without(blip2, "query_tokens")}, path)
    with pytest.raises(CirflowError, match=r"missing from the file: query_tokens"):
        load_blip2_file(model, str(path))
    partial_vit = {**blip2, "visual_encoder.cls_token": source.visual_encoder.cls_token.detach()}
    torch.save({"model": partial_vit}, path)
    with pytest.raises(CirflowError, match=r"missing from the file: visual_encoder\."):
        load_blip2_file(model, str(path))


def test_a_checkpoint_of_the_first_format_loads_with_its_region_mode(tmp_path):
    """Format cirflow-sprc/1 kept the region mode as two booleans (with_region: aux,
    region_tokens: tokens); such files still load, as the model they were written from."""
    from cirflow.model.checkpoints import saved_state_dict

    torch.manual_seed(0)
    for mode, flags in (("aux", {"with_region": True}), ("tokens", {"region_tokens": True})):
        model = SPRC(get_preset("tiny_scratch"), mode, 4 if mode == "tokens" else None)
        spec = {
            "preset": "tiny_scratch",
            "freeze_vit": False,
            "vit_precision": "fp32",
            "with_region": False,
            "region_tokens": False,
            "max_region_tokens": 4 if mode == "tokens" else None,
            **flags,
        }
        path = tmp_path / f"{mode}.pt"
        torch.save(
            {"format": "cirflow-sprc/1", "model": spec, "state_dict": saved_state_dict(model)}, path
        )
        loaded, _ = load_model(path)
        assert loaded.region_mode == mode and loaded.config == model.config
        own = loaded.state_dict()
        assert all(torch.equal(own[k], v) for k, v in model.state_dict().items())
