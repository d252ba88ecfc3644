"""The demo's BLIP-2-style first stage (rule pretrain_backbone): the tiny ViT and Q-Former learn
image–text contrast on the demo's TRAIN images paired with their scene descriptions, so that the
`tiny` preset starts from a pretrained backbone and freezes its ViT, as real users start from
BLIP-2 with a frozen EVA ViT-g (docs/design.md §9).

Image–text contrastive loss (BLIP-2's ITC, written from its definition): with K_i the nq query
outputs of image i (QFormer(queries, cross-attending ln_vision(ViT(image))), projected by
`vision_proj`, normalised) and t_j the [CLS] output of description j (QFormer text-only,
`text_proj`, normalised),

    s(i, j) = max_k ⟨K_{i,k}, t_j⟩
    L_itc = ½ [CE(s / τ, diagonal) + CE(sᵀ / τ, diagonal)]

where a column holding the same description as the row's own is not a negative. Batches are
whole image families (a base scene and its five one-edit variants), so the hardest negatives —
scenes one attribute apart — share every batch, which is what composed retrieval later needs.

Image-grounded masked words (`masked_words` > 0; see `masked_description_loss`): with M the
masked positions of description j (a fraction `mask_fraction` of its words, at least one),

    L_words = CE(head(QFormer(queries ⊕ T̃_j, cross-attending E_j)[text positions]), T_j) over M

where T̃_j is T_j with [MASK] at M and `head` is BERT's LM head tied to the word embeddings.
The loss is L_itc + masked_words · L_words. `train_vit: false` keeps the ViT at its seeded
random init (BLIP-2's first stage freezes its image encoder): on the demo a ViT trained on the
few train images kept less of what composed retrieval needs than a random one (README).

Output: one file in BLIP-2's checkpoint layout, ``{"model": state_dict}`` with LAVIS's names
(`visual_encoder.*`, `ln_vision.*`, `Qformer.*`, `query_tokens`, `vision_proj.*`,
`text_proj.*`, `temp`), loaded by the `tiny` preset through `cirflow.model.factory.load_blip2_file`, the code
that loads the official BLIP-2 file for `pretrain`. Its figure: image → description R@1 on the
val images (never trained on), over all val descriptions and within each family.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from cirflow.data.datasets import DatasetRoot, SplitDataset, as_dataset_root
from cirflow.data.descriptions import descriptions_file, load_descriptions
from cirflow.data.tables import ImageTable, model_input, pad_tokens
from cirflow.device import resolve_device
from cirflow.errors import CirflowError, naming_keys
from cirflow.io import csv_text, write_json_atomic, write_text_atomic
from cirflow.model.checkpoints import write_first_stage
from cirflow.model.config import ModelConfig
from cirflow.model.factory import build_model
from cirflow.model.sprc import SPRC, contrastive_loss
from cirflow.settings import check_declared, setting
from cirflow.train.optimizer import adamw
from cirflow.train.rng import seed_everything
from cirflow.train.schedule import one_cycle

log = logging.getLogger(__name__)

# What a BLIP-2 first stage holds (SPRC adds prompt tokens and, in stage 2, a region head).
BLIP2_PREFIXES = (
    "visual_encoder.",
    "ln_vision.",
    "Qformer.",
    "query_tokens",
    "vision_proj.",
    "text_proj.",
    "temp",
)


@dataclass
class PretrainSettings:
    """The `pretrain:` section of config.yaml, each key declared once (`cirflow.settings`)."""

    epochs: int = setting(15, "epochs of the first stage", config="pretrain", minimum=1)
    families_per_batch: int = setting(
        8, "whole image families (6 images each) per batch", config="pretrain", minimum=1
    )
    learning_rate: float = setting(
        2e-3, "peak OneCycle learning rate (AdamW)", config="pretrain", exclusive_minimum=0
    )
    weight_decay: float = setting(0.05, "AdamW weight decay", config="pretrain", minimum=0)
    warmup_epochs: float = setting(1.0, "OneCycle warm-up in epochs", config="pretrain", minimum=0)
    # Weight of the image-grounded masked-word loss beside L_itc (0 = contrast only), and the
    # fraction of each description's words it masks.
    masked_words: float = setting(
        0.0, "weight of the masked-word loss beside contrast", config="pretrain", minimum=0
    )
    mask_fraction: float = setting(
        0.3,
        "fraction of each description's words the masked-word loss masks",
        config="pretrain",
        exclusive_minimum=0,
        maximum=1,
    )
    # False: the ViT keeps its (seeded) random init and only the Q-Former learns, as BLIP-2's
    # first stage keeps its image encoder frozen.
    train_vit: bool = setting(True, "train the ViT with the Q-Former", config="pretrain")
    seed: int = setting(0, "seed of init and batch order", config="pretrain")
    device: str = setting("cpu", "cpu, or auto / cuda", config="pretrain", param=False)
    num_workers: int = setting(
        0, "image decoding worker processes", config="pretrain", param=False, minimum=0
    )
    threads: int | None = setting(None, "threads of the job", param=False)
    progress: bool = setting(True, "progress bars", param=False)

    def check(self) -> None:
        check_declared(self, lambda name: f"pretrain.{name}")


def image_families(dataset: SplitDataset) -> list[tuple[str, ...]]:
    """The split's image families, in triplet order: each CIRR img_set's members; on FashionIQ
    (no img_set) the images its triplets link, reference to target (connected components)."""
    if all("img_set" in t for t in dataset.triplets):
        return list(dict.fromkeys(tuple(t["img_set"]["members"]) for t in dataset.triplets))
    parent: dict[str, str] = {}

    def top(name: str) -> str:
        while parent.setdefault(name, name) != name:
            name = parent[name]
        return name

    for t in dataset.triplets:
        parent[top(t["target_hard"])] = top(t["reference"])
    groups: dict[str, list[str]] = {}
    for name in parent:
        groups.setdefault(top(name), []).append(name)
    return [tuple(g) for g in groups.values()]


class DescribedImages:
    """A split's images with their descriptions, grouped into families (`image_families`)."""

    def __init__(self, dataset: SplitDataset, table: ImageTable, descriptions: dict, tokenizer):
        missing = [n for n in table.names if n not in descriptions]
        if missing:
            raise CirflowError(
                f"{len(missing)} {dataset.split} images have no scene description "
                f"(e.g. {missing[0]!r}): is {descriptions_file(dataset.root)} from the same demo?"
            )
        self.table = table
        self.texts = [descriptions[n] for n in table.names]
        enc = tokenizer(self.texts, truncation=True, max_length=64)
        self.tokens = enc["input_ids"]
        self.pad_id = tokenizer.pad_token_id or 0
        # Same text -> same id: a repeated description is not a negative of itself.
        ids: dict[str, int] = {}
        self.text_ids = torch.tensor([ids.setdefault(t, len(ids)) for t in self.texts])
        seen: set[str] = set()
        self.families: list[list[int]] = []
        for members in image_families(dataset):
            group = [table.index[m] for m in members if m in table.index and m not in seen]
            seen.update(members)
            if group:
                self.families.append(group)
        loose = [i for i, n in enumerate(table.names) if n not in seen]
        self.families += [[i] for i in loose]
        self.vit_tokens: torch.Tensor | None = None

    def freeze_vit_tokens(self, model: SPRC, device, batch: int = 256) -> None:
        """With the ViT frozen its tokens never change: compute them once here (before
        `ln_vision`, stored float16 as the image-features stage stores them, so the first stage
        learns from what stage 1 will read) and let every step read them instead of running the
        ViT on pixels again (docs/design.md §9)."""
        t0 = time.perf_counter()
        rows = []
        with torch.no_grad():
            for s in range(0, len(self.table), batch):
                pixels = self.table.get(torch.arange(s, min(len(self.table), s + batch)))
                rows.append(model.vit_tokens(model_input(pixels, device)).half().cpu())
        self.vit_tokens = torch.cat(rows)
        self.table.images = None  # the pixels are not read again
        log.info(
            "%s: the frozen ViT's tokens of %d images, computed once (%.1f s)",
            self.table.split,
            len(self.vit_tokens),
            time.perf_counter() - t0,
        )

    def inputs(self, idx: torch.Tensor) -> torch.Tensor:
        """What `SPRC.image_tokens` takes for these images: fp16 ViT tokens when frozen
        (`freeze_vit_tokens`), else uint8 pixels."""
        return self.table.get(idx) if self.vit_tokens is None else self.vit_tokens[idx]

    def batches(self, families_per_batch: int, seed: int, epoch: int):
        """Whole families per batch, in a (seed, epoch)-seeded order (a resume-free run)."""
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.families), generator=g).tolist()
        for start in range(0, len(order) - families_per_batch + 1, families_per_batch):
            chosen = [
                i for k in order[start : start + families_per_batch] for i in self.families[k]
            ]
            yield self.batch(chosen)

    def batch(self, indices: list[int]):
        idx = torch.tensor(indices)
        ids, mask = pad_tokens([self.tokens[i] for i in indices], self.pad_id)
        return self.inputs(idx), ids, mask, self.text_ids[idx]

    def num_batches(self, families_per_batch: int) -> int:
        return len(self.families) // families_per_batch


def text_features(model: SPRC, input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """t = norm(text_proj(QFormer(T, no image)[:, 0])): the description's [CLS] feature."""
    with model.autocast():
        out = model.Qformer.bert(input_ids, attention_mask=attention_mask, return_dict=True)
        return F.normalize(model.text_proj(out.last_hidden_state[:, 0, :]).float(), dim=-1)


def itc_loss(model: SPRC, embeds, input_ids, attention_mask, text_ids) -> torch.Tensor:
    k = model.target_features(embeds)  # (B, nq, D)
    t = text_features(model, input_ids, attention_mask)  # (B, D)
    sim = torch.einsum("ikd,jd->ijk", k, t).amax(dim=-1)  # image i vs text j
    temp = model.temperature()
    i2t = contrastive_loss(sim, temp, text_ids)
    t2i = contrastive_loss(sim.t(), temp, text_ids)
    return (i2t + t2i) / 2


class MaskedWordHead(nn.Module):
    """BERT's masked-word head over the Q-Former's text outputs, tied to its word embeddings
    (pretraining only: SPRC has no use for it, so it is not saved)."""

    def __init__(self, model: SPRC):
        super().__init__()
        width = model.Qformer.config.hidden_size
        self.words = model.Qformer.bert.embeddings.word_embeddings
        self.transform = nn.Sequential(
            nn.Linear(width, width), nn.GELU(), nn.LayerNorm(width, eps=1e-12)
        )
        self.bias = nn.Parameter(torch.zeros(self.words.num_embeddings))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.transform(hidden) @ self.words.weight.t() + self.bias


def mask_words(input_ids, attention_mask, fraction: float, mask_id: int, generator):
    """(masked ids, labels): `fraction` of each description's words (never [CLS]/[SEP]/padding)
    become [MASK]; labels hold the original id there and -100 elsewhere. At least one word per
    description is masked."""
    words = attention_mask.bool().clone()
    words[:, 0] = False  # [CLS]
    words[torch.arange(len(words)), attention_mask.sum(dim=1) - 1] = False  # [SEP]
    noise = torch.rand(input_ids.shape, generator=generator).to(input_ids.device)
    noise = noise.masked_fill(~words, 2.0)
    chosen = (noise < fraction) & words
    # The lowest-noise word of every description, so that none goes unmasked.
    chosen[torch.arange(len(words)), noise.argmin(dim=1)] |= words.any(dim=1)
    labels = input_ids.masked_fill(~chosen, -100)
    return input_ids.masked_fill(chosen, mask_id), labels


@dataclass
class MaskedWords:
    """The image-grounded masked-word loss: its head, the fraction of words it masks, the
    [MASK] id and the generator that draws the masks."""

    head: MaskedWordHead
    fraction: float
    mask_id: int
    generator: torch.Generator

    def loss(self, model: SPRC, embeds, input_ids, attention_mask) -> torch.Tensor:
        """The description, with `fraction` of its words masked, goes through the Q-Former
        together with the query tokens (which cross-attend the image, as in SPRC's fusion
        pass); the masked words are predicted from the text outputs. Text never sees the image
        but through the queries, so the queries (and the ViT) must keep every object's size,
        colour, shape and position — what contrast alone lets them drop — and the text layers
        learn the demo's words as BERT's pretraining teaches the real Q-Former's."""
        masked, labels = mask_words(
            input_ids, attention_mask, self.fraction, self.mask_id, self.generator
        )
        hidden = model.multimodal_hidden(embeds, masked, attention_mask)
        with model.autocast():
            logits = self.head(hidden[:, model.query_tokens.shape[1] :, :]).float()
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)


@torch.no_grad()
def retrieval_figures(model: SPRC, data: DescribedImages, device, batch: int = 256) -> dict:
    """Image -> description R@1 over all of the split's descriptions and within each family."""
    model.eval()
    n = len(data.table)
    feats, texts = [], []
    for s in range(0, n, batch):
        idx = list(range(s, min(n, s + batch)))
        images, ids, mask, _ = data.batch(idx)
        feats.append(model.gallery_features(model_input(images, device)))
        texts.append(text_features(model, ids.to(device), mask.to(device)))
    k, t = torch.cat(feats), torch.cat(texts)
    # One column per distinct description; an image is right when its own text scores highest.
    unique_ids, first = torch.unique(data.text_ids, return_inverse=True)
    columns = torch.zeros(len(unique_ids), t.shape[1], device=t.device)
    columns[first] = t
    sim = torch.einsum("ikd,jd->ijk", k, columns).amax(dim=-1)
    own = sim.gather(1, first.to(sim.device)[:, None])
    r1 = float((sim.gt(own).sum(dim=1) == 0).float().mean() * 100)
    in_family, total = 0, 0
    for group in data.families:
        if len(group) < 2:
            continue
        g = torch.tensor(group, device=sim.device)
        sub = torch.einsum("ikd,jd->ijk", k[g], t[g]).amax(dim=-1)
        in_family += int((sub.argmax(dim=1) == torch.arange(len(group), device=sim.device)).sum())
        total += len(group)
    sizes = [len(g) for g in data.families if len(g) > 1]
    model.train()
    return {
        "image_to_text_r1": r1,
        "image_to_text_r1_chance": 100.0 / len(unique_ids),
        "in_family_r1": 100.0 * in_family / max(total, 1),
        "in_family_r1_chance": 100.0 * len(sizes) / max(sum(sizes), 1),
        "images": n,
    }


def backbone_state(model: SPRC) -> dict[str, torch.Tensor]:
    return {
        k: v.detach().clone()
        for k, v in model.state_dict().items()
        if k.startswith(BLIP2_PREFIXES) and not k.endswith("position_ids")
    }


@dataclass
class Pretraining:
    """One first-stage run: the model, its data, the masked-word loss (or None), the optimizer
    and its schedule."""

    model: SPRC
    train: DescribedImages
    val: DescribedImages
    words: MaskedWords | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    steps_per_epoch: int
    device: torch.device

    @property
    def columns(self) -> list[str]:
        return ["epoch", "loss_itc"] + (["loss_words"] if self.words is not None else [])


def prepare(
    cirr_root: str | Path | DatasetRoot, s: PretrainSettings, device: torch.device
) -> Pretraining:
    """The model (tiny_scratch, the ViT frozen unless `train_vit`), the train and val images with
    their descriptions, and the optimizer, built in an order that fixes every random draw."""
    model = build_model(ModelConfig("tiny_scratch", freeze_vit=not s.train_vit)).to(device)
    root = as_dataset_root(cirr_root)  # a plain path: the CIRR demo's layout
    descriptions = load_descriptions(root.path)

    def described(split: str) -> DescribedImages:
        ds = root.open(split)
        table = ImageTable(ds, model.preset.image_size, "memory", s.num_workers, s.progress)
        return DescribedImages(ds, table, descriptions, model.tokenizer)

    train, val = described("train"), described("val")
    if not s.train_vit:
        for data in (train, val):
            data.freeze_vit_tokens(model, device)
    steps_per_epoch = train.num_batches(s.families_per_batch)
    if steps_per_epoch == 0:
        raise CirflowError(
            f"pretrain.families_per_batch {s.families_per_batch} is more than the "
            f"{len(train.families)} train families"
        )
    words = None
    params = [p for p in model.parameters() if p.requires_grad and p is not model.prompt_tokens]
    if s.masked_words > 0:
        head = MaskedWordHead(model).to(device)
        mask_gen = torch.Generator().manual_seed(s.seed)
        words = MaskedWords(head, s.mask_fraction, model.tokenizer.mask_token_id, mask_gen)
        # The word embeddings are the model's own (tied): only the head's new weights join.
        params += [*head.transform.parameters(), head.bias]
    optimizer = adamw(params, s.learning_rate, s.weight_decay)
    total = steps_per_epoch * s.epochs
    scheduler = one_cycle(
        optimizer, s.learning_rate, total, min(s.warmup_epochs / s.epochs, 0.5), 100.0
    )
    return Pretraining(model, train, val, words, optimizer, scheduler, steps_per_epoch, device)


def pretrain_epoch(run: Pretraining, s: PretrainSettings, epoch: int) -> dict:
    """One pass over the train families: the epoch's mean of each loss."""
    t0 = time.perf_counter()
    sums = dict.fromkeys(run.columns[1:], 0.0)
    bar = tqdm(
        run.train.batches(s.families_per_batch, s.seed, epoch),
        total=run.steps_per_epoch,
        desc=f"pretrain {epoch + 1}/{s.epochs}",
        disable=not s.progress,
        mininterval=10,
    )
    for images, ids, mask, text_ids in bar:
        ids, mask = ids.to(run.device), mask.to(run.device)
        embeds = run.model.image_tokens(model_input(images, run.device))
        losses = {"loss_itc": itc_loss(run.model, embeds, ids, mask, text_ids.to(run.device))}
        if run.words is not None:
            losses["loss_words"] = run.words.loss(run.model, embeds, ids, mask)
        loss = losses["loss_itc"] + s.masked_words * losses.get("loss_words", 0.0)
        if not math.isfinite(float(loss.detach())):
            raise CirflowError(f"pretrain: non-finite loss at epoch {epoch + 1}")
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.scheduler.step()
        for k, v in losses.items():
            sums[k] += float(v.detach())
    row = {"epoch": epoch + 1, **{k: v / run.steps_per_epoch for k, v in sums.items()}}
    log.info(
        "pretrain epoch %d/%d: %s (%.1f s)",
        epoch + 1,
        s.epochs,
        ", ".join(f"{k} {row[k]:.4f}" for k in run.columns[1:]),
        time.perf_counter() - t0,
    )
    return row


def pretrain_backbone(
    cirr_root: str | Path | DatasetRoot,
    out: str | Path,
    metrics_out: str | Path,
    settings: PretrainSettings,
) -> dict:
    """Train the tiny backbone on a demo's train split (the CIRR demo's at a plain path, or the
    FashionIQ demo's as a DatasetRoot); write `out` and `metrics_out`."""
    s = settings
    s.check()
    if s.threads:
        torch.set_num_threads(int(s.threads))
    with naming_keys(lambda name: f"pretrain.{name}"):
        device = resolve_device(s.device)
    seed_everything(s.seed)
    run = prepare(cirr_root, s, device)
    log.info(
        "pretraining the tiny backbone on %d train images (%d families), %d epochs x %d steps",
        len(run.train.table),
        len(run.train.families),
        s.epochs,
        run.steps_per_epoch,
    )
    run.model.train()
    rows = [pretrain_epoch(run, s, epoch) for epoch in range(s.epochs)]
    figures = retrieval_figures(run.model, run.val, device)
    write_first_stage(out, backbone_state(run.model))
    result = {
        "split": "val",
        **figures,
        "train_images": len(run.train.table),
        "settings": asdict(s),
        "history": rows,
    }
    write_json_atomic(metrics_out, result, indent=2)
    write_text_atomic(Path(metrics_out).with_suffix(".csv"), csv_text(rows, run.columns))
    log.info(
        "val image -> description R@1 %.2f (chance %.2f); within a family %.2f (chance %.2f)",
        figures["image_to_text_r1"],
        figures["image_to_text_r1_chance"],
        figures["in_family_r1"],
        figures["in_family_r1_chance"],
    )
    return result
