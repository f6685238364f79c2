//! The demo model built into the binary.
//!
//! `fixtures/demo-bitnet` is a real BitNet b1.58 model (2B-4T architecture,
//! 4.2 M parameters) trained on licence texts: it continues "Permission is
//! hereby granted, free of charge," with the MIT licence. It makes every
//! command work offline on a fresh machine.

use std::sync::Arc;

use bitnet_model::HfCheckpoint;

/// Name shown to users.
pub const NAME: &str =
    "built-in demo-bitnet (4.2M-parameter BitNet b1.58 trained on licence texts)";

const CONFIG: &[u8] = include_bytes!("../../../fixtures/demo-bitnet/config.json");
const WEIGHTS: &[u8] = include_bytes!("../../../fixtures/demo-bitnet/model.safetensors");
/// `tokenizer.json` of the demo model.
pub const TOKENIZER: &[u8] = include_bytes!("../../../fixtures/demo-bitnet/tokenizer.json");
/// `tokenizer_config.json` of the demo model.
pub const TOKENIZER_CONFIG: &[u8] =
    include_bytes!("../../../fixtures/demo-bitnet/tokenizer_config.json");
/// `generation_config.json` of the demo model.
pub const GENERATION_CONFIG: &[u8] =
    include_bytes!("../../../fixtures/demo-bitnet/generation_config.json");

struct Static(&'static [u8]);

impl AsRef<[u8]> for Static {
    fn as_ref(&self) -> &[u8] {
        self.0
    }
}

/// The demo model's tokenizer.
pub fn tokenizer() -> bitnet_tokenizer::Result<bitnet_tokenizer::Tokenizer> {
    bitnet_tokenizer::Tokenizer::from_hf_parts(
        TOKENIZER,
        Some(TOKENIZER_CONFIG),
        Some(GENERATION_CONFIG),
    )
}

/// The demo checkpoint, read in place from the binary.
pub fn checkpoint() -> HfCheckpoint {
    HfCheckpoint {
        label: "builtin:demo-bitnet".into(),
        config_json: CONFIG.to_vec(),
        shards: vec![("model.safetensors".into(), Arc::new(Static(WEIGHTS)))],
    }
}
