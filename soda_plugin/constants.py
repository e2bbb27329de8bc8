"""Names and values shared across soda_plugin. Declared once here; import, never retype."""

# Default column names of a `soda` row. Teacher data follows the GAD dataset on the Hub
# (`ytz20/LMSYS-Chat-GPT-5-Chat-Response`): `content` holds the prompt messages and
# `teacher_response` the teacher's answer. The pair builder adds `student_response`.
DEFAULT_FIELD_MESSAGES = "content"
DEFAULT_FIELD_TEACHER = "teacher_response"
DEFAULT_FIELD_STUDENT = "student_response"
# Written by the teacher tool next to each answer (`teacher/records.py`).
FINISH_REASON_FIELD = "finish_reason"
# The GRPO view's column (GAD): the teacher's answer rendered as the final turn, for the discriminator.
GRPO_TEACHER_COLUMN = "teacher_completion"

# Per-dataset keys (already part of Axolotl's dataset schemas, so they survive its
# validation for both SFT and DPO datasets) that override the default column names.
DATASET_KEY_MESSAGES = "field_messages"
DATASET_KEY_TEACHER = "field_chosen"
DATASET_KEY_STUDENT = "field_rejected"

# Label value ignored by the loss (transformers/Axolotl convention).
IGNORE_INDEX = -100

# The file a finished stage writes into its output folder.
STAGE_MARKER_FILENAME = "soda_stage.json"
MARKER_SCHEMA_VERSION = 1

# Keys of the DPO config that mean nothing to the SFT warmup and are removed when the
# warmup config is derived from the recipe.
DPO_ONLY_KEYS = (
    "rl",
    "trl",
    "rl_beta",
    "dpo_use_weighting",
    "dpo_use_logits_to_keep",
    "dpo_label_smoothing",
    "dpo_norm_loss",
    "dpo_padding_free",
    "dpo_generate_during_eval",
    "precompute_ref_log_probs",
    "rl_adapter_ref_model",
    "hub_model_id",
    "hub_strategy",
)

PLUGIN_PATH = "soda_plugin.SODAPlugin"

# Axolotl's LoRA kernel switches. Left unset, Axolotl turns them on for an SFT LoRA config
# and off for an `rl` one (`utils/schemas/validation.py`, `lora_kernels_auto_enable`).
LORA_KERNEL_KEYS = ("lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel", "lora_embedding_kernel")
