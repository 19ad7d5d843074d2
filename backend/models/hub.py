"""Before a hub repo id is downloaded: is it in the local cache, or is the hub reachable? Without this check
huggingface_hub retries for most of a minute, offline, before it says anything."""

import socket
from urllib.parse import urlparse

from backend.core.errors import StudioError
from backend.models.source import LM_WEIGHTS

CONNECT_TIMEOUT_S = 5.0


class HubUnavailable(StudioError):
    """A hub repo id that is not cached while the hub cannot be used."""


def check_reachable(repo_id: str) -> None:
    """Return at once when the repo's weights are cached; else raise a message to act on when HF_HUB_OFFLINE
    is set or the hub's host cannot be reached within CONNECT_TIMEOUT_S."""
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo_id, LM_WEIGHTS), str):
        return
    if constants.HF_HUB_OFFLINE:
        raise HubUnavailable(
            f"{repo_id}: not in the local Hugging Face cache, and HF_HUB_OFFLINE is set: "
            "download it once online (huggingface-cli download " + repo_id + ") or give a "
            "local model folder"
        )
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise HubUnavailable(
            f"{repo_id}: not in the local Hugging Face cache, and the studio cannot reach "
            f"{url.hostname} ({e}): check the network, or give a local model folder"
        ) from None
