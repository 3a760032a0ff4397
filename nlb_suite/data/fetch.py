"""Download the NLB datasets from DANDI with the dandi client: verified, atomic, resumable.

Every file is checked against the registry's size and sha256 before it is used. A download streams
into `<file>.part` beside its final name and is renamed only once verified, so a file under its
final name is always complete; an interrupted download resumes from the `.part` file next time.
A process downloading a file holds a lock on its `.part`, so two fetches of one file never write
into it together: the second waits, then finds the file there.

Every network step is bounded by `NETWORK_TIMEOUT_S` (to connect, and for each read): the
archive is asked for its info with our own session, the client is then built for that instance
without the request its constructor would make (which has no timeout), and every request of the
client's session, downloads included, goes through an adapter that sets the timeout.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tqdm import tqdm

from ..core.atomic import file_sha256
from ..core.errors import NlbSuiteError
from ..core.spec import Asset, DatasetSpec, Role
from ..core.writable import check_folder
from .paths import DatasetFiles, MissingDataError, asset_path, dataset_files

if TYPE_CHECKING:
    import requests
    from dandi.dandiapi import DandiAPIClient, RemoteAsset

API_URL_ENV_VAR = "NLB_SUITE_DANDI_API"
DEFAULT_API_URL = "https://api.dandiarchive.org/api"
PART_SUFFIX = ".part"
# An interrupted read loses the chunk in flight, so chunks are small enough to lose little.
DOWNLOAD_CHUNK_BYTES = 256 * 1024
# Seconds to connect, and to wait for each read, in every request. The client retries a refused
# connection 12 times with backoff (about a minute); one plain request first lets an offline
# machine get its answer at once.
NETWORK_TIMEOUT_S = 30.0

log = logging.getLogger(__name__)


class FetchError(NlbSuiteError):
    """A dataset file could not be obtained from DANDI."""


class IntegrityError(FetchError):
    """A file's bytes differ from what the registry pins."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class SizeMismatchError(IntegrityError):
    """A file has the wrong number of bytes."""


class ChecksumError(IntegrityError):
    """A file has the right size but the wrong sha256."""


class OfflineError(FetchError, MissingDataError):
    """The archive could not be reached; the message lists the files to obtain another way."""


FileState = Literal["valid", "missing", "invalid"]


@dataclass(frozen=True)
class FileStatus:
    """One file of a DANDI dataset as found in the data directory."""

    spec: DatasetSpec
    role: Role
    path: Path
    state: FileState
    # Why an invalid file failed verification.
    problem: str = ""
    # Bytes already in `<file>.part` from an interrupted download.
    partial_bytes: int = 0

    @property
    def asset(self) -> Asset:
        return self.spec.train if self.role == "train" else self.spec.test

    @property
    def size(self) -> int:
        """The pinned size in bytes."""
        if self.asset.size is None:
            raise FetchError(f"dataset {self.spec.name!r}: {self.asset.path} has no pinned size")
        return self.asset.size

    @property
    def bytes_to_download(self) -> int:
        return 0 if self.state == "valid" else self.size - self.partial_bytes


def resolve_api_url(override: str | None = None) -> str:
    """`override`, else $NLB_SUITE_DANDI_API, else the public DANDI archive's API."""
    url = override or os.environ.get(API_URL_ENV_VAR) or DEFAULT_API_URL
    if not url.lower().startswith(("http://", "https://")):
        raise FetchError(
            f"DANDI API URL {url!r} (from --dandi-api-url or ${API_URL_ENV_VAR}) must start with "
            f"http:// or https://, e.g. {DEFAULT_API_URL}"
        )
    return url


def dandiset_page_url(spec: DatasetSpec) -> str:
    """The dandiset version's page in the public DANDI web archive."""
    return f"https://dandiarchive.org/dandiset/{spec.dandiset}/{spec.version}"


def part_path(path: Path) -> Path:
    """Where an unfinished download of `path` is kept."""
    return path.with_name(path.name + PART_SUFFIX)


def verify_file(path: Path, asset: Asset) -> None:
    """Check `path` against the size and sha256 pinned for `asset`; what is not pinned is not checked."""
    if not path.is_file():
        raise MissingDataError(f"{path}: no such file")
    size = path.stat().st_size
    if asset.size is not None and size != asset.size:
        raise SizeMismatchError(path, f"{size:,} bytes, expected {asset.size:,}")
    if asset.sha256 is not None:
        digest = file_sha256(path)
        if digest != asset.sha256:
            raise ChecksumError(path, f"sha256 {digest}, expected {asset.sha256}")


def check_files(spec: DatasetSpec, root: str | Path | None = None) -> list[FileStatus]:
    """The state of a DANDI dataset's two files in the data directory; present files are verified."""
    _require_dandi(spec)
    statuses = []
    roles: tuple[tuple[Role, Asset], ...] = (("train", spec.train), ("test", spec.test))
    for role, asset in roles:
        path = asset_path(spec, asset, root)
        if path.is_file():
            try:
                verify_file(path, asset)
            except IntegrityError as err:
                statuses.append(FileStatus(spec=spec, role=role, path=path, state="invalid", problem=err.problem))
            else:
                statuses.append(FileStatus(spec=spec, role=role, path=path, state="valid"))
        else:
            partial = part_path(path)
            partial_bytes = partial.stat().st_size if partial.is_file() else 0
            statuses.append(FileStatus(spec=spec, role=role, path=path, state="missing", partial_bytes=partial_bytes))
    return statuses


def fetch_files(statuses: Iterable[FileStatus], api_url: str | None = None, progress: bool = True) -> None:
    """Download every file of `statuses` that is not valid; contacts the archive only if needed."""
    needed = [status for status in statuses if status.state != "valid"]
    if not needed:
        return
    for status in needed:  # before the archive is asked anything
        check_folder(status.path.parent, "the folder of a downloaded file (under --data-dir / $NLB_SUITE_DATA)")
    url = resolve_api_url(api_url)
    for status in needed:
        if status.state == "invalid":
            # Removed before anything can fail, so that a failed fetch never leaves it to be used.
            status.path.unlink()
    with _connect(url, needed) as client:
        for status in needed:
            remote = _remote_asset(client, status)
            status.path.parent.mkdir(parents=True, exist_ok=True)
            _download_verified(remote, status, progress)


def fetch_dataset(spec: DatasetSpec, root: str | Path | None = None, api_url: str | None = None,
                  progress: bool = True) -> DatasetFiles:
    """The dataset's verified files; missing or invalid ones are downloaded from DANDI first."""
    statuses = check_files(spec, root)
    for status in statuses:
        if status.state == "invalid":
            log.warning("%s: %s; downloading it again", status.path, status.problem)
    fetch_files(statuses, api_url, progress)
    return dataset_files(spec, root)


def _require_dandi(spec: DatasetSpec) -> None:
    if spec.source == "synthetic":
        raise FetchError(
            f"dataset {spec.name!r} is synthetic, not on DANDI: generate it with `nlb-suite synth {spec.name}`"
        )
    if spec.source != "dandi" or spec.dandiset is None or spec.version is None:
        raise FetchError(
            f"dataset {spec.name!r} is not a DANDI dataset; its files are the paths in its spec "
            f"({spec.train.path}, {spec.test.path})"
        )
    for asset in (spec.train, spec.test):
        if asset.size is None or asset.sha256 is None:
            raise FetchError(f"dataset {spec.name!r}: {asset.path} has no pinned size and sha256 to verify")


def _timeout_session(session: requests.Session | None = None) -> requests.Session:
    """`session` (or a new one) whose every request waits at most NETWORK_TIMEOUT_S to connect
    and for each read, whatever timeout its caller passed (the dandi client passes none)."""
    import requests
    from requests.adapters import HTTPAdapter

    class TimeoutAdapter(HTTPAdapter):
        def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:  # type: ignore[override]
            kwargs["timeout"] = NETWORK_TIMEOUT_S
            return super().send(request, **kwargs)  # type: ignore[arg-type]

    session = session or requests.Session()
    for prefix in ("http://", "https://"):
        session.mount(prefix, TimeoutAdapter())
    return session


def _connect(url: str, needed: list[FileStatus]) -> DandiAPIClient:
    # Imported here: the client takes most of a second to import and only fetching needs it.
    import requests
    from dandi.consts import DandiInstance, known_instances_rev
    from dandi.dandiapi import DandiAPIClient

    # The client logs every failed request, with a traceback, through logging's last-resort stderr
    # handler when the application configured none; our own error already says what went wrong.
    dandi_logger = logging.getLogger("dandi")
    if not dandi_logger.handlers:
        dandi_logger.addHandler(logging.NullHandler())

    info_url = url.rstrip("/") + "/info/"
    with _timeout_session() as probe:
        try:
            response = probe.get(info_url)
        except (requests.ConnectionError, requests.Timeout) as err:
            raise _offline_error(url, needed, err) from None
        except requests.RequestException as err:
            raise FetchError(f"{url} is not a DANDI API this client can use: {_short_reason(err)}") from None
    if not response.ok:
        raise FetchError(
            f"{url} is not a DANDI API: {response.url} answered HTTP {response.status_code}; "
            f"check --dandi-api-url / ${API_URL_ENV_VAR}"
        )
    # Built for a given instance, the client asks nothing of the server until it is used.
    name = known_instances_rev.get(url.rstrip("/"), "nlb-suite-fetch")
    client = DandiAPIClient(dandi_instance=DandiInstance(name=name, gui=None, api=url))
    _timeout_session(client.session)
    return client


def _offline_error(url: str, needed: list[FileStatus], err: Exception) -> OfflineError:
    lines = [
        f"cannot reach the DANDI archive at {url} ({_short_reason(err)}).",
        "Missing files (obtain them another way and put them at these paths):",
    ]
    for status in needed:
        lines.append(f"  {status.spec.name} {status.role}: {status.path}")
        if status.state == "invalid":
            lines.append(f"      (the file there did not verify and was removed: {status.problem})")
        lines.append(f"      {status.size:,} bytes, sha256 {status.asset.sha256}")
    specs = {status.spec.name: status.spec for status in needed}.values()
    lines.append("DANDI pages of the pinned versions:")
    lines.extend(f"  {spec.name}: {dandiset_page_url(spec)}" for spec in specs)
    lines.append(
        "A tree made by `dandi download DANDI:<dandiset>/<version>` works as it is: point --data-dir "
        "or $NLB_SUITE_DATA at the folder that holds the <dandiset> folders."
    )
    return OfflineError("\n".join(lines))


def _short_reason(err: BaseException) -> str:
    """The operating system's words for a failed connection ('Connection refused'), which requests
    buries several exceptions deep, else the first plain message on the way down."""
    message = ""
    seen: object = err
    while isinstance(seen, BaseException):
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        if not message and seen.args and isinstance(seen.args[0], str):
            message = seen.args[0]
        seen = seen.__cause__ or seen.__context__ or getattr(seen, "reason", None)
    return message or type(err).__name__


def _remote_asset(client: DandiAPIClient, status: FileStatus) -> RemoteAsset:
    """The archive's record of the file in the pinned dandiset version, checked against the registry."""
    import requests
    from dandi.exceptions import NotFoundError

    spec, asset = status.spec, status.asset
    where = f"DANDI {spec.dandiset}/{spec.version} at {client.api_url}"
    try:
        remote = client.get_dandiset(spec.dandiset, spec.version).get_asset_by_path(asset.path)
    except NotFoundError as err:
        raise FetchError(f"{where}: {err}") from None
    except requests.RequestException as err:
        raise FetchError(f"{where}: looking up {asset.path} failed ({_short_reason(err)})") from None
    except (ValueError, KeyError, TypeError) as err:  # an answer the client cannot parse
        raise FetchError(f"{where}: looking up {asset.path} gave an answer that is not DANDI's ({err})") from None
    if asset.asset_id is not None and remote.identifier != asset.asset_id:
        raise FetchError(
            f"{where}: {asset.path} is asset {remote.identifier}, but the registry pins {asset.asset_id}"
        )
    if remote.size != status.size:
        raise FetchError(f"{where}: {asset.path} has {remote.size:,} bytes, the registry pins {status.size:,}")
    return remote


def _download_verified(remote: RemoteAsset, status: FileStatus, progress: bool) -> None:
    """Fill `<file>.part`, verify it, rename it to the final name, holding the lock on the part.

    A resumed download that does not verify (the earlier bytes may come from a different file, or
    the server ignored the range request) is discarded and downloaded once more from the start."""
    partial = part_path(status.path)
    with _locked(partial):
        if _is_valid(status):  # another process finished it while this one waited for the lock
            partial.unlink(missing_ok=True)
            return
        start = partial.stat().st_size
        while True:
            _stream(remote, status, partial, start, progress)
            try:
                verify_file(partial, status.asset)
            except IntegrityError as err:
                if start == 0:
                    partial.unlink()
                    raise type(err)(
                        status.path,
                        f"the bytes served at {remote.base_download_url} do not match the registry "
                        f"({err.problem}); the download was discarded",
                    ) from None
                log.warning("%s: resumed download did not verify (%s); downloading it from the start",
                            status.path, err.problem)
                # Emptied, not removed: the lock is on this file.
                os.truncate(partial, 0)
                start = 0
            else:
                os.replace(partial, status.path)
                return


def _is_valid(status: FileStatus) -> bool:
    try:
        verify_file(status.path, status.asset)
    except (IntegrityError, MissingDataError):
        return False
    return True


@contextmanager
def _locked(partial: Path) -> Iterator[None]:
    """Hold an exclusive lock on `partial` (created empty if absent) while the block runs.

    The lock is on the file, so once it is granted the file must still be the one under that name:
    the process that held it may have renamed it to the final name, or removed it, meanwhile."""
    while True:
        handle = os.open(partial, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.warning("%s: another process is downloading this file; waiting for it to finish", partial)
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                current = os.path.samestat(os.fstat(handle), os.stat(partial))
            except FileNotFoundError:
                current = False
            if current:
                yield
                return
        finally:
            os.close(handle)


def _stream(remote: RemoteAsset, status: FileStatus, partial: Path, start: int, progress: bool) -> None:
    """Append the asset's bytes from offset `start` to `partial`."""
    import requests

    total = status.size
    if start >= total:
        return
    with (
        partial.open("ab" if start else "wb") as out,
        tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
             desc=f"{status.spec.name} {status.role}", disable=not progress) as bar,
    ):
        try:
            for chunk in remote.get_download_file_iter(chunk_size=DOWNLOAD_CHUNK_BYTES)(start):
                out.write(chunk)
                bar.update(len(chunk))
            out.flush()
            # The rename that follows must not publish a file whose bytes are still in the page cache.
            os.fsync(out.fileno())
        # requests' errors are OSErrors too, so they are told apart from disk errors first.
        except requests.RequestException as err:
            out.flush()
            raise FetchError(
                f"{status.path}: download from {remote.base_download_url} stopped after "
                f"{out.tell():,} of {total:,} bytes ({_short_reason(err)}); the bytes so far are kept in "
                f"{partial.name} and the next fetch resumes from there"
            ) from None
        except OSError as err:
            raise FetchError(f"{partial}: cannot write the download ({err})") from None
