"""Constants of the data and model contract (shared/SPEC.md). Nothing here imports torch."""

SAMPLE_RATE = 24_000  # Mimi's input rate
FRAME_RATE = 12.5  # Mimi frames per second
FRAME_SIZE = 1920  # samples per frame at 24 kHz (80 ms)
NUM_CODEBOOKS = 8
CARD = 2048  # entries per codebook; also the audio "initial" token
TEXT_CARD = 32000  # text vocabulary of Kyutai's tokenizer; also the text "initial" token
PAD_ID = 3  # text: a frame with no new text
EPAD_ID = 0  # text: the frame just before a piece that follows a PAD
ZERO_TOKEN = -1  # zero embedding, no loss
SPEAKERS = ("A", "B")  # A = left channel, B = right channel
DELAYS = [0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1]  # training view: text, main 0..7, other 0..7

# The loss parts the trainer logs to metrics.jsonl (SPEC.md "Loss"): totals, per stream, then accuracies.
LOSS_TOTALS = ("loss", "text_loss", "audio_loss")
LOSS_STREAMS = (
    "text_nonpad_loss",
    "text_pad_loss",
    "moshi_semantic_loss",
    "moshi_acoustic_loss",
    "user_semantic_loss",
    "user_acoustic_loss",
)
ACCURACIES = ("text_acc", "moshi_semantic_acc", "user_semantic_acc")


def frames_for_samples(n_samples: int) -> int:
    """Mimi frames for a 24 kHz channel of n_samples: ceil(N / 1920)."""
    return -(-n_samples // FRAME_SIZE)
