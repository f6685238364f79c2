//! What constrained decoding costs per token: builds the token trie for a
//! tokenizer's vocabulary, compiles a few grammars, and runs each through
//! generations whose "model" is random logits (so every step takes a
//! different path through the grammar), timing the mask computation plus
//! its application to the logits, and the advance past the sampled token.
//!
//! `cargo run --release -p bitnet-engine --example grammar_cost -- DIR [STEPS]`
//! with DIR a Hugging Face model directory (its tokenizer is used), e.g.
//! ../shared/fixtures/tiny-bitnet for the 128k-token Llama 3 vocabulary.

use std::path::Path;
use std::time::Instant;

use bitnet_engine::Tokenizer;
use bitnet_engine::grammar::{GrammarSpec, Grammars};
use bitnet_sampling::Rng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).ok_or("usage: grammar_cost DIR [STEPS]")?;
    let steps: usize = args.get(2).map_or(Ok(2000), |s| s.parse())?;
    let tokenizer = Tokenizer::from_hf_dir(Path::new(dir))?;
    let n_vocab = tokenizer.vocab_size();
    let t = Instant::now();
    let grammars = Grammars::new(&tokenizer, n_vocab)?;
    println!(
        "vocabulary {n_vocab} tokens: trie and slicer built in {:.0} ms",
        ms(t)
    );

    let specs = [
        ("json_object", GrammarSpec::JsonObject),
        (
            "json_schema",
            GrammarSpec::JsonSchema(serde_json::json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 40},
                    "age": {"type": "integer", "minimum": 0, "maximum": 150},
                    "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 5},
                    "address": {"type": "object", "properties": {
                        "city": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}
                    }, "required": ["city", "zip"]}
                },
                "required": ["name", "age", "tags", "address"],
                "additionalProperties": false
            })),
        ),
        (
            "lark",
            GrammarSpec::Lark(
                "start: expr\nexpr: term ((\"+\" | \"-\") term)*\nterm: NUMBER | \"(\" expr \")\"\nNUMBER: /[0-9]{1,6}/\n"
                    .into(),
            ),
        ),
    ];
    let mut rng = Rng::new(7);
    let mut logits = vec![0f32; n_vocab];
    let mut masked = Vec::new();
    for (name, spec) in &specs {
        let t = Instant::now();
        let compiled = grammars.compile(spec)?;
        let compile_ms = ms(t);
        let (mut mask_us, mut advance_us) = (Vec::new(), Vec::new());
        let mut outputs = 0;
        while mask_us.len() < steps {
            let mut g = compiled.clone();
            outputs += 1;
            for _ in 0..256 {
                for v in logits.iter_mut() {
                    *v = (rng.next_f64() * 8.0) as f32;
                }
                let t = Instant::now();
                g.mask(&logits, &mut masked)?;
                mask_us.push(us(t));
                let token = argmax(&masked);
                if tokenizer.stop_ids().contains(&token) {
                    break;
                }
                let t = Instant::now();
                g.advance(token)?;
                advance_us.push(us(t));
                if g.is_complete() {
                    break;
                }
            }
        }
        println!(
            "{name:12} compile {compile_ms:6.1} ms | per token: mask {} | advance {} ({} steps, {outputs} outputs)",
            summary(&mut mask_us),
            summary(&mut advance_us),
            mask_us.len()
        );
    }
    Ok(())
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn us(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e6
}

fn summary(v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
    format!(
        "mean {mean:6.1} µs, median {:6.1}, p99 {:7.1}, max {:7.1}",
        at(0.5),
        at(0.99),
        at(1.0)
    )
}
