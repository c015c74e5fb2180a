"""A feature set's submitted partitions, waited for on the driver, and what the run did.

:func:`.extract.extraction` submits one task per partition and yields a
:class:`PendingExtraction`; its :meth:`~PendingExtraction.result` waits for them
(:func:`wait_partitions`: progress, the first failure raised, the mean-image sums added as
partitions finish), records the set's completion and returns an :class:`ExtractionResult`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..progress import Counter
from .feature_set import BadImage, FeatureSet
from .reuse import Plan
from .tasks import Job

if TYPE_CHECKING:
    from ..metrics.variety.sums import ClassSums


@dataclass(frozen=True)
class ExtractionResult:
    """What :func:`extract_features` did. ``name`` is the feature set inside ``group``.

    ``n_reused`` images kept stored features that match their files; ``n_reextracted`` were
    extracted by this run (new, changed, or never finished; all of them for a new set).
    ``n_resumed`` partitions were found finished and current and left alone;
    ``partitions_written`` lists the others.
    """

    store: str
    group: str
    name: str
    n_images: int
    n_features: int
    n_partitions: int
    n_resumed: int
    bad_images: tuple[BadImage, ...] = ()
    n_reused: int = 0
    n_reextracted: int = 0
    partitions_written: tuple[int, ...] = ()
    #: With ``mean_image``: the per-class mean-image sums of the rows ``summed_rows`` (indices
    #: into the listing), those this run read; None when it read none.
    image_sums: ClassSums | None = None
    summed_rows: tuple[int, ...] = ()

    @property
    def n_bad(self) -> int:
        return len(self.bad_images)


class PendingExtraction:
    """The submitted partitions of one feature set (see :func:`extraction`)."""

    def __init__(
        self,
        client: Any,
        job: Job,
        fset: FeatureSet,
        plan: Plan,
        work: list,
        futures: list,
        progress: bool,
    ) -> None:
        self._client, self._job, self._fset, self._plan = client, job, fset, plan
        self._work, self._futures, self._progress = work, futures, progress
        self._result: ExtractionResult | None = None

    def result(self) -> ExtractionResult:
        """Wait for every partition, record completion, and say what was done (once)."""
        if self._result is None:
            self._result = self._finish()
        return self._result

    def cancel(self) -> None:
        """Cancel the partitions not waited for (none once :meth:`result` returned)."""
        if self._result is None:
            self._client.cancel(self._futures)

    def _finish(self) -> ExtractionResult:
        job, fset, plan, work = self._job, self._fset, self._plan, self._work
        prov = fset.provenance
        label = f"extract {fset.group}"
        sums = wait_partitions(self._client, self._futures, label, self._progress, job)
        self._futures = []
        if work or not prov.complete:
            prov = fset.complete()
        return ExtractionResult(
            store=job.address.store,
            group=fset.group,
            name=fset.name,
            n_images=prov.n_images,
            n_features=prov.n_features,
            n_partitions=prov.n_partitions,
            n_resumed=prov.n_partitions - len(work),
            bad_images=prov.bad_images,
            n_reused=plan.n_reused,
            n_reextracted=plan.n_extract,
            partitions_written=tuple(sorted(w.index for w in work)),
            image_sums=sums,
            summed_rows=tuple(i for w in work for i in w.extract) if sums is not None else (),
        )


def wait_partitions(
    client: Any, futures: list, label: str, progress: bool, job: Job
) -> ClassSums | None:
    """Wait for every future; on the first failure cancel the rest and raise its error.

    Partitions finished before the failure keep their rows and markers. Each future is
    released as soon as it is done: its partition is on disk, and a result the scheduler still
    held would be recomputed (the partition written twice) when its worker dies later. With
    ``job.mean_image``, the tasks' mean-image sums are added here as they arrive (one array
    per class and partition) and returned; else None.
    """
    from distributed import as_completed

    pending, sums = set(futures), (None if job.mean_image is None else {})
    if not futures:  # nothing read, nothing summed (and as_completed wants a client)
        return None
    try:
        with Counter(label, len(futures), "partitions", enabled=progress) as counter:
            for fut in as_completed(futures, loop=client.loop):  # not the default client
                done = fut.result()  # raises the task's error, e.g. a BadImageError naming a file
                if job.mean_image is not None:
                    job.mean_image.add_sums(sums, done.sums)
                pending.discard(fut)
                fut.release()
                counter.step()
    except BaseException:
        client.cancel(list(pending))
        raise
    return sums
