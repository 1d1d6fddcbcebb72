"""A model's towers as exported files, run without torch: the role, not the model.

card.py: the query card, the JSON that says how to frame, pool and normalise with the files;
paths.py: where a spec's files live, derived from the spec alone, and finding a usable card;
query.py: the query tower (LightEncoder): text queries on ONNX Runtime and `tokenizers`;
document.py: the document tower (DocEncoder): a code/text model's documents on the backend's file;
image.py: CLIP's image tower (ImageTower, with open_clip's preprocessing in PIL + numpy) and
  ExportedClip, a CLIP spec's captions, text and images from its files;
towers.py: the one place that decides between an exported tower and the full model;
export.py: writing a loaded model's query files (and CLIP's image tower), checked against the model
  before the card is written.
"""
