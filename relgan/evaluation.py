"""Evaluation protocols: which samples and references each metric uses, and one report per evaluation.

Protocols (named in every report, with the numbers of sentences actually used):

* ``relgan``  - BLEU of the first 200 samples against the whole test set (the official papers);
  Self-BLEU leave-one-out among the same 200.
* ``texygen`` - BLEU of all samples against the first 500 test lines (Texygen's default ``get_bleu_fast``);
  Self-BLEU leave-one-out among the first 500 samples.
* ``full``    - BLEU of all samples against the whole test set; Self-BLEU leave-one-out among the first
  5,000 samples (Self-BLEU grows with N, so N is fixed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import fmean

from torch import Tensor

from relgan.data import Corpus
from relgan.decoding import PLAIN, Decoding
from relgan.metrics import registry
from relgan.metrics.bleu import ReferenceIndex, self_bleu_scores_by_order
from relgan.metrics.classifier import SentenceClassifier, class_accuracy, real_data_classifier
from relgan.metrics.diversity import diversity_metrics
from relgan.metrics.embedding import embed_sentences, frechet_distance, load_minilm, mauve_score
from relgan.metrics.lm_judges import LanguageModelJudges
from relgan.metrics.registry import Sampled
from relgan.models import SequenceGenerator
from relgan.runtime import derive_seed
from relgan.sampling import sample_ids
from relgan.tokenization import decoded_words, reference_words, split_identity


@dataclass(frozen=True)
class Protocol:
    name: str
    bleu_hypotheses: int | None  # first k samples are BLEU hypotheses; None = all
    bleu_references: int | None  # first k test lines are references; None = all
    self_bleu_samples: int | None  # Self-BLEU among the first k samples; None = all


PROTOCOLS = {
    "relgan": Protocol("relgan", 200, None, 200),
    "texygen": Protocol("texygen", None, 500, 500),
    "full": Protocol("full", None, None, 5000),
}


class TextEvaluator:
    """Text metrics of samples against one fixed reference set; the BLEU index is built once."""

    def __init__(
        self,
        references: Sequence[str],
        protocol: str,
        orders: Sequence[int],
        training: Sequence[Sequence[str]] | None = None,
        words: Callable[[str], list[str]] = reference_words,
        tokenization: str = "nltk",
        split_id: str | None = None,
    ) -> None:
        """``words`` splits samples and references into the units of the n-gram metrics (``tokenization`` names
        it in every report; ``split_id``, by default the same, in every signature: for a tokenizer's pieces the
        hash of its vocabulary, :func:`relgan.tokenization.split_identity`)."""
        self.protocol = PROTOCOLS[protocol]
        self.orders = sorted(orders)
        self.references = list(references)
        self.words, self.tokenization = words, tokenization
        self.split_id = split_id or tokenization
        chosen = self.references[: self.protocol.bleu_references]
        self.index = ReferenceIndex([words(line) for line in chosen], max_n=max(self.orders))
        self.num_references = len(chosen)
        self.training = training
        self._encoder: tuple[object, object] | bool | None = None  # (tokenizer, model); False: not installed

    @classmethod
    def for_corpus(cls, corpus: Corpus, protocol: str, orders: Sequence[int]) -> TextEvaluator | None:
        """The evaluator of a text corpus (None for the oracle): its test lines, novelty against its training
        sentences as the model sees them (tokenised, truncated)."""
        if corpus.test_text is None:
            return None
        split = decoded_words(corpus.tokenization, corpus.tokenizer)
        training = [split(text) for text in corpus.decode(corpus.train_ids)]
        return cls(
            corpus.test_text,
            protocol,
            orders,
            training,
            corpus.metric_words(),
            corpus.tokenization,
            split_identity(corpus.tokenization, corpus.tokenizer),
        )

    def __call__(
        self, samples: Sequence[str], metrics: Sequence[str], judges: LanguageModelJudges | None = None
    ) -> dict:
        """Report of the text metrics (those of ``metrics`` that apply, with their signatures) of decoded samples."""
        run = Sampled(list(samples), [self.words(text) for text in samples], text=self, judges=judges)
        return {
            "protocol": self.protocol.name,
            "num_samples": len(samples),
            "tokenization": self.tokenization,
            **registry.evaluate(run, metrics),
        }

    def bleu(self, words: Sequence[Sequence[str]]) -> dict:
        hypotheses = words[: self.protocol.bleu_hypotheses]
        scores = self.index.scores(hypotheses, self.orders)
        return {
            **{f"bleu-{n}": fmean(scores[n]) for n in self.orders},
            "bleu_hypotheses": len(hypotheses),
            "bleu_references": self.num_references,
        }

    def self_bleu(self, words: Sequence[Sequence[str]]) -> dict:
        if len(words) < 2:
            return {}
        pool = words[: self.protocol.self_bleu_samples]
        scores = self_bleu_scores_by_order(pool, self.orders)
        return {**{f"self-bleu-{n}": fmean(scores[n]) for n in self.orders}, "self_bleu_samples": len(pool)}

    def diversity(self, words: Sequence[Sequence[str]]) -> dict:
        return diversity_metrics(words, self.training)

    def backward_bleu(self, words: Sequence[Sequence[str]], forward: dict) -> dict:
        """Backward BLEU (coverage): the test sentences as hypotheses, the samples as references, and its harmonic
        mean with forward BLEU (cotk's FW/BW-BLEU): that of ``forward`` (the report so far), else computed here."""
        if not all(f"bleu-{n}" in forward for n in self.orders):
            forward = self.bleu(words)
        hypotheses = [self.words(line) for line in self.references[: self.protocol.bleu_references]]
        hypotheses = hypotheses[: self.protocol.bleu_hypotheses]
        scores = ReferenceIndex(words, max_n=max(self.orders)).scores(hypotheses, self.orders)
        report: dict = {f"bw-bleu-{n}": fmean(scores[n]) for n in self.orders}
        for n in self.orders:
            fw, bw = forward[f"bleu-{n}"], report[f"bw-bleu-{n}"]
            report[f"fw-bw-bleu-{n}"] = 2 * fw * bw / (fw + bw) if fw + bw > 0 else 0.0
        report.update(bw_bleu_hypotheses=len(hypotheses), bw_bleu_references=len(words))
        return report

    def fed(self, samples: Sequence[str]) -> dict:
        """FED-MiniLM and MAUVE (on the same embeddings) between N samples and N references (N = the smaller
        count), or a skip notice."""
        if self._encoder is None:
            self._encoder = load_minilm() or False
        if not isinstance(self._encoder, tuple):
            return {
                "fed-minilm": None,
                "mauve": None,
                "fed_notice": "FED and MAUVE skipped: install the 'fed' extra (pip install -e '.[fed]')",
            }
        n = min(len(samples), len(self.references))
        if n < 2:  # a covariance needs two sentences
            return {
                "fed-minilm": None,
                "mauve": None,
                "fed_notice": f"FED and MAUVE skipped: {n} sentence(s) to compare, at least 2 are needed",
            }
        tokenizer, model = self._encoder
        x = embed_sentences(samples[:n], tokenizer, model)
        y = embed_sentences(self.references[:n], tokenizer, model)
        return {"fed-minilm": frechet_distance(x, y), "mauve": mauve_score(x, y), "fed_samples": n}


def corpus_judges(corpus: Corpus) -> LanguageModelJudges:
    """The LM judges of a corpus: its raw training and test lines (an oracle's: its token sequences)."""
    train = corpus.train_text if corpus.train_text is not None else corpus.decode(corpus.train_ids)
    test = corpus.test_text if corpus.test_text is not None else corpus.decode(corpus.test_ids)
    return LanguageModelJudges(train, test)


def generator_report(
    generator: SequenceGenerator,
    corpus: Corpus,
    metrics: Sequence[str],
    *,
    num_samples: int,
    batch_size: int,
    seed: int,
    nll_batch_size: int,
    text_evaluator: TextEvaluator | None = None,
    judges: LanguageModelJudges | None = None,
    decoding: Decoding = PLAIN,
    label: int | None = None,
) -> tuple[dict, list[str]]:
    """Metrics of a generator (those in ``metrics`` that apply to the corpus) and its decoded samples.

    Samples are drawn with a private RNG seeded by ``seed`` (of class ``label`` from a conditional generator,
    whose NLLs are then given that class); NLL_gen uses full batches of ``nll_batch_size``. Call under
    ``torch.no_grad()`` (and the Accelerator's autocast for mixed precision).
    """
    ids = sample_ids(generator, num_samples, batch_size, seed, decoding, label)
    options = {"batch_size": batch_size, "nll_batch_size": nll_batch_size, "decoding": decoding, "label": label}
    return sentences_report(ids, corpus, metrics, generator, text_evaluator, judges, options)


def sentences_report(
    ids: Tensor,
    corpus: Corpus,
    metrics: Sequence[str],
    generator: SequenceGenerator | None = None,
    text_evaluator: TextEvaluator | None = None,
    judges: LanguageModelJudges | None = None,
    options: dict | None = None,
) -> tuple[dict, list[str]]:
    """Metrics of the sentences ``ids`` [N, T] (those in ``metrics`` that apply) and their decoded text. Without
    the ``generator`` that drew them (sentences resampled from several draws: relgan/reranking.py) the metrics
    that read a generator's probabilities (NLL_test, NLL_gen, the exact ones) are left out."""
    texts = corpus.decode(ids)
    words = [text_evaluator.words(text) for text in texts] if text_evaluator is not None else []
    run = Sampled(texts, words, text_evaluator, judges, generator, corpus, ids, options or {})
    report = registry.evaluate(run, metrics)
    if text_evaluator is not None:
        report = {
            "protocol": text_evaluator.protocol.name,
            "num_samples": len(texts),
            "tokenization": text_evaluator.tokenization,
            **report,
        }
    return report, texts


class CorpusEvaluation:
    """Everything that evaluates generators on one corpus, built once for many evaluations: the text evaluator
    and the LM judges (those that ``metrics`` need), per class for labelled data, and the class classifier.

    For labelled data every metric is computed per class (``per_class``: the samples of class c against class
    c's test and training sentences; an unconditional generator's samples are the same for every class) and
    the report's top-level values are their means over classes, beside ``class_accuracy`` (the mean over
    classes of the share of class-c samples the classifier assigns to c) and ``classifier_test_accuracy``.
    """

    def __init__(self, corpus: Corpus, protocol: str, orders: Sequence[int], metrics: Sequence[str]) -> None:
        self.corpus = corpus
        labelled = corpus.label_names is not None
        self.parts = [corpus.of_class(i) for i in range(corpus.num_classes)] if labelled else [corpus]
        text = registry.needed(metrics, registry.REFERENCES)
        self.text_evaluators = [
            TextEvaluator.for_corpus(part, protocol, orders) if text else None for part in self.parts
        ]
        judged = registry.needed(metrics, registry.JUDGES)
        self.judges = [corpus_judges(part) if judged else None for part in self.parts]
        self._classifier: SentenceClassifier | None = None
        self._classifier_test_accuracy: float | None = None
        # model selection: the held-out training sentences as the references of an independent sample set
        self.selection = (
            TextEvaluator(
                corpus.valid_text,
                protocol,
                orders,
                None,
                corpus.metric_words(),
                corpus.tokenization,
                split_identity(corpus.tokenization, corpus.tokenizer),
            )
            if corpus.valid_text is not None
            else None
        )

    @property
    def selects(self) -> bool:
        """Whether evaluations also report the model-selection values (data.validation_size > 0)."""
        return self.corpus.valid_ids is not None

    def selection_report(
        self, generator: SequenceGenerator, *, num_samples: int, batch_size: int, seed: int, nll_batch_size: int
    ) -> dict:
        """What model selection reads, under ``val/`` keys: the generator's NLL on the held-out training sentences
        (``val/nll_test``) and, from samples drawn apart from the reported ones (another seed), BLEU against the
        held-out sentences and Self-BLEU (real text) or NLL_oracle (the synthetic benchmark). Neither the test split
        nor the reported samples take part, so choosing the best evaluation by these does not inflate its reported
        test metrics. Call under ``torch.no_grad()``."""
        if self.corpus.valid_ids is None:
            raise ValueError("model selection needs held-out training sentences (data.validation_size)")
        held_out = dataclasses.replace(self.corpus, test_ids=self.corpus.valid_ids)
        ids = sample_ids(generator, num_samples, batch_size, derive_seed(seed, "model selection"))
        texts = held_out.decode(ids)
        options = {"batch_size": batch_size, "nll_batch_size": nll_batch_size}
        run = Sampled(texts, [], generator=generator, corpus=held_out, ids=ids, options=options)
        values = registry.evaluate(run, ["nll_test", "nll_oracle"])
        if self.selection is not None:
            text = self.selection(texts, ["bleu", "self_bleu"])
            values = {**text, **values, "signatures": {**text["signatures"], **values["signatures"]}}
        return {f"val/{key}": value for key, value in values.items()}

    def of_sentences(self, ids: Tensor, metrics: Sequence[str], options: dict) -> tuple[dict, list[str]]:
        """The report of sentences ``ids`` [N, T] that no single generator drew (:func:`sentences_report`), on an
        unlabelled corpus."""
        if self.corpus.label_names is not None:
            raise ValueError("sentences without a generator are evaluated on unlabelled corpora only")
        return sentences_report(ids, self.corpus, metrics, None, self.text_evaluators[0], self.judges[0], options)

    def classifier(self) -> SentenceClassifier:
        """The classifier of the real training split (trained, or read from the cache, at first use)."""
        if self._classifier is None:
            corpus = self.corpus
            if (
                corpus.train_text is None
                or corpus.train_labels is None
                or corpus.label_names is None
                or corpus.test_text is None
                or corpus.test_labels is None
            ):
                raise ValueError("the class classifier needs labelled text")
            self._classifier = real_data_classifier(corpus.train_text, corpus.train_labels, corpus.label_names)
            self._classifier_test_accuracy = self._classifier.accuracy(corpus.test_text, corpus.test_labels)
        return self._classifier

    def __call__(self, generator: SequenceGenerator, metrics: Sequence[str], **options) -> tuple[dict, list[str]]:
        """The report of ``generator`` (``options``: those of :func:`generator_report`) and its samples (for
        labelled data ``label<TAB>sentence`` lines, class by class)."""
        if self.corpus.label_names is None:
            return generator_report(
                generator,
                self.corpus,
                metrics,
                text_evaluator=self.text_evaluators[0],
                judges=self.judges[0],
                **options,
            )
        classifier = self.classifier()
        per_class, lines = {}, []
        for index, (name, part) in enumerate(zip(self.corpus.label_names, self.parts, strict=True)):
            report, texts = generator_report(
                generator,
                part,
                metrics,
                text_evaluator=self.text_evaluators[index],
                judges=self.judges[index],
                label=index if generator.num_classes else None,
                **options,
            )
            per_class[name] = {**report, "class_accuracy": class_accuracy(classifier, texts, index)}
            lines += [f"{name}\t{text}" for text in texts]
        return {
            **_class_means(per_class),
            "classifier_test_accuracy": self._classifier_test_accuracy,
            "classifier": classifier.spec.describe(),
            "conditional": bool(generator.num_classes),
            "per_class": per_class,
        }, lines


def _class_means(per_class: dict[str, dict]) -> dict:
    """The mean over classes of every number all classes report, and the descriptions (protocol, conventions)
    they share."""
    reports = list(per_class.values())
    means = {
        key: fmean(r[key] for r in reports)
        for key, value in reports[0].items()
        if isinstance(value, float) and all(isinstance(r.get(key), float) for r in reports)
    }
    shared = {
        key: value
        for key, value in reports[0].items()
        if isinstance(value, str) and all(r.get(key) == value for r in reports)
    }
    return {**means, **shared}
