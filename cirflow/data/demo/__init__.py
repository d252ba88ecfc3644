"""The embedded demo dataset: synthetic shape scenes and edit captions in CIRR's on-disk layout.

    generate_demo(out_dir, DemoSpec(seed=0, train_triplets=2000, val_triplets=500,
                                    test1_triplets=500))

writes, under `out_dir`, exactly what a real CIRR copy holds (the SPRC layout):

    cirr/captions/cap.rc2.{train,val,test1}.json     triplets (test1 without target fields)
    cirr/captions/edits.rc2.{train,val,test1}.json   sidecar {"<pairid>": edit type} (not CIRR's)
    cirr/image_splits/split.rc2.{split}.json          name -> "./train/<k>/train-<n>-<i>-img<j>.png",
                                                      "./dev/dev-<n>-<i>-img<j>.png", "./test1/..."
    train/<k>/*.png, dev/*.png, test1/*.png           the images
    boxes_gt.json                                     the tight box of every object (seed box format)
    cirr/captions/boxes_edited.rc2.{train,val}.json  sidecar {"<pairid>": boxes}: the objects the
                                                      triplet's edit concerns, in its target (or
                                                      where a removed one was); not CIRR's
    descriptions.json                                 {image name: scene description}, every split
    demo_manifest.json                                seed, counts, generator version (written last)

How the data is built
---------------------
A *scene* is 1-4 objects (shape x colour x size) placed in distinct cells of a 3x3 grid (with a
little jitter inside the cell, so objects never overlap) over a textured background (gradient,
radial gradient, smooth noise or stripes in muted tints). Object colours are chosen, per family,
only among the palette colours that contrast with every part of that family's background.

A *family* is one base scene B plus five variants V_k = edit_k(B), each made by one edit (colour,
shape, add, remove, move, resize, count), with no two variants made by the same edit of the same
object. The six images of a family share size and background, so they are each other's hard
distractors: they form the family's `img_set.members` (six names, as in CIRR). Triplets are
drawn from the ten pairs (B -> V_k, caption of edit_k) and (V_k -> B, caption of the inverse
edit); the caption names the edited object unambiguously in the reference (colour + shape, or
a shape/colour that is unique in that scene) and states the change, so it singles out the target
among the family's members. Every family gives TRIPLETS_PER_FAMILY triplets (the last family of a
split gives the remainder).

Determinism: every family draws from its own numpy Generator seeded with (seed, split index,
family index), families are assembled in order, and PNGs are written without timestamps, so the
same seed gives byte-identical files whatever the number of worker processes.

Edit types: the sidecar records the edit that takes each triplet's reference to its target, as
its caption asks it: a (V_k -> B) triplet of an `add` variant is a `remove` (and vice versa); the
other edits are their own inverse. `demo_manifest.json` counts the same types.

Scene descriptions: every image gets one, the objects in row-major cell order, each as
"<article> <size> <colour> <shape> <position>" joined by "and" ("a small red star at the top
left and a large blue circle in the center"). Size and position words vary as in the captions,
drawn from a second stream of the family's seed (`description_rng`), so the images and captions
do not depend on them.

Captions are lowercase words separated by single spaces, without punctuation or digits;
`caption_vocabulary()` lists every word they can contain, `description_vocabulary()` every word
of a description (the tiny model's vocab file is built from both).

The modules, each depending only on those above it:

    scene      objects, scenes and the shared random draws
    wording    the words: caption templates, phrasing, descriptions, the two vocabularies
    edits      the one-edit variants of a base scene, with their captions
    geometry   objects in pixels: grid, outlines, tight boxes
    render     backgrounds, drawing, PNG bytes
    family     one family (base scene, five variants, background) from its own random stream
    write      the CIRR files, sidecars, boxes_gt.json, descriptions.json and the manifest
    generate   `generate_demo`: the families' jobs in worker processes, then the files
"""

from cirflow.data.demo.family import IMAGES_PER_FAMILY, TRIPLETS_PER_FAMILY
from cirflow.data.demo.generate import DemoSpec, generate_demo
from cirflow.data.demo.wording import caption_vocabulary, description_vocabulary
from cirflow.data.demo.write import BOXES_FILE, EDITED_SPLITS, GENERATOR_VERSION, MANIFEST_FILE

__all__ = [
    "BOXES_FILE",
    "EDITED_SPLITS",
    "GENERATOR_VERSION",
    "IMAGES_PER_FAMILY",
    "MANIFEST_FILE",
    "TRIPLETS_PER_FAMILY",
    "DemoSpec",
    "caption_vocabulary",
    "description_vocabulary",
    "generate_demo",
]
