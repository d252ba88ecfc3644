"""The embedded FashionIQ demo: synthetic garments and two-annotator captions in FashionIQ's
on-disk layout.

    generate_fashioniq_demo(out_dir, FashionIQDemoSpec(seed=0, train_triplets=1200,
                                                       val_triplets=200, test_triplets=100))

writes, under `out_dir`, exactly what a real FashionIQ copy holds, for each category of
dress, shirt, toptee and each split of train, val, test (triplet counts per category):

    captions/cap.{category}.{split}.json        [{"target", "candidate", "captions": [2]}, ...]
                                                (test entries without "target", as in FashionIQ)
    image_splits/split.{category}.{split}.json  [image name, ...]
    images/{name}.png                           the images (square, `image_size` px)

and beside them (not FashionIQ's):

    captions/edits.{category}.{split}.json      {"<entry index>": [edit type, ...]}: the key is
                                                the entry's position (from 0) in the captions
                                                file of the same category and split; the value
                                                the one or two edit types (EDIT_TYPES order)
                                                that take its candidate to its target
    boxes_gt.json                               the tight box of each garment part (seed box
                                                format: {name: [[x1, y1, x2, y2], ...]},
                                                normalised, largest first)
    descriptions.json                           {image name: description}, every image
    demo_manifest.json                          seed, image size, counts, generator version
                                                (written last)

Image names are `{category}-{split}-{family:05d}-{slot}` (a family's six images take slots 0-5
in random order, so a name does not say which is the base).

How the data is built
---------------------
A *garment* is a category and six attributes (`garment.py`): colour (eleven bold palette
colours), pattern (solid, stripes, dots, floral), sleeves (none, short, long), length (dresses:
short, knee, long), neckline (round, v, collar) and graphic (shirts and tops: none, star,
circle on the chest). It is drawn flat and centred on a plain light background, as a product
photo (`render.py`): a dress is a bodice and a flared skirt, a shirt a long body with wide
shoulders, a top a shorter fitted body; sleeves hang from the shoulders, the neckline is cut out
of the body's top (a collar adds two pointed flaps), the pattern and graphic are in the
family's accent colour (white or black). Every attribute stays visible at the model's 64 px.

A *family* is one base garment B and five variants V_k, each differing from B by one or two
edits (an edit type is the attribute it changes: color, pattern, sleeves, length, neckline,
graphic; each category edits the five it lets vary). The six share the category, placement,
width, skirt flare, pattern layout, accent and background, so they are each other's hard
distractors; all six are in the split's image list (the val gallery is the category's val
split, ~2 images per triplet as in FashionIQ). Triplets are drawn from the ten pairs (B -> V_k)
and (V_k -> B); every family gives TRIPLETS_PER_FAMILY (the last of a split the remainder).

Captions (`wording.py`): two per triplet, in two annotators' styles, in random order: one
names the target's new value of every edited attribute ("is red with long sleeves"), the other
how each changed ("is darker and has longer sleeves"), sometimes naming only one of two edits
or stating one of them. The first, with the candidate, singles out the target among the
family. Lower-case words, no punctuation or digits: `caption_vocabulary()` lists them all,
`description_vocabulary()` those of the descriptions ("a long plain red dress with long sleeves
and a v neck").

Boxes: per image, the tight box of the whole garment and of each part it has: each sleeve, the
skirt (dresses), the neckline (the cut-out and any collar), the graphic. An edit changes pixels
only inside its parts' boxes, in the candidate or the target (`geometry.EDITED_PARTS`).

Determinism: every family draws from its own numpy Generator seeded with (seed, category,
split, family), families are assembled in order and PNGs are written without timestamps, so the
same seed gives byte-identical files whatever the number of worker processes.

The modules, each depending only on those above it:

    garment    categories, attributes, what each category allows, the base garment
    wording    the words: the two captions of a triplet, descriptions, the vocabularies
    geometry   the parts' polygons, a family's look
    edits      the one- or two-edit variants of a base garment, with their captions
    render     patterns, drawing, the part boxes
    family     one family (base, five variants, look, accent, background) from its own stream
    write      FashionIQ's files, sidecars, boxes_gt.json, descriptions.json, the manifest
    generate   `generate_fashioniq_demo`: the families' jobs in worker processes, then the files
"""

from cirflow.data.demo_fashioniq.family import IMAGES_PER_FAMILY, TRIPLETS_PER_FAMILY
from cirflow.data.demo_fashioniq.garment import CATEGORIES, EDIT_TYPES, SPLITS
from cirflow.data.demo_fashioniq.generate import FashionIQDemoSpec, generate_fashioniq_demo
from cirflow.data.demo_fashioniq.wording import caption_vocabulary, description_vocabulary
from cirflow.data.demo_fashioniq.write import GENERATOR_VERSION

__all__ = [
    "CATEGORIES",
    "EDIT_TYPES",
    "GENERATOR_VERSION",
    "IMAGES_PER_FAMILY",
    "SPLITS",
    "TRIPLETS_PER_FAMILY",
    "FashionIQDemoSpec",
    "caption_vocabulary",
    "description_vocabulary",
    "generate_fashioniq_demo",
]
