"""ttsopt: an honest optimization workbench for Chatterbox TTS."""
import warnings

__version__ = "0.1.0"

# diffusers warns about a class chatterbox's S3Gen uses, on every import; it says nothing
# about our runs and buries the lines that do.
warnings.filterwarnings("ignore", message=".*LoRACompatibleLinear.*", category=FutureWarning)
