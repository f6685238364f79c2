//! An HTTP request body as the server checks it (the first byte picks the
//! endpoint), then its constraint (JSON schema, GBNF, Lark) compiled against
//! the built-in model's vocabulary, as a request's would be.
#![no_main]

use std::sync::OnceLock;

use bitnet_engine::{Engine, EngineOptions, ModelLocation};
use libfuzzer_sys::fuzz_target;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let opts = EngineOptions {
            threads: 1,
            ..EngineOptions::default()
        };
        Engine::load(&ModelLocation::Builtin, opts).expect("the built-in model loads")
    })
}

const PATHS: [&str; 3] = ["/v1/chat/completions", "/v1/completions", "/generate"];

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let path = PATHS[usize::from(which) % PATHS.len()];
    if let Ok(Some(spec)) = bitnet_server::check_request(path, body) {
        let _ = engine().compile_grammar(&spec);
    }
});
