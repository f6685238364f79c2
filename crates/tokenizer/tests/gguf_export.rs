//! A tokenizer written into a GGUF (what `bitnet convert` does) and read
//! back keeps its ids, its chat template and every stop token.

mod common;

use bitnet_tokenizer::Tokenizer;
use common::{gguf_vocab_from_file, repo_fixtures};

#[test]
fn exported_vocabulary_keeps_every_stop_token() {
    let dir = repo_fixtures().join("small-bitnet");
    let hf = Tokenizer::from_hf_dir(&dir).expect("load tokenizer.json");
    let json = std::fs::read(dir.join("tokenizer.json")).unwrap();
    let vocab = hf.to_gguf_vocab(&json).expect("export");
    // EOS `<|end_of_text|>` and EOT `<|eot_id|>`, as bitnet.cpp's own file.
    let theirs = gguf_vocab_from_file(&dir.join("gguf/small-bitnet-i2_s.gguf"));
    assert_eq!((vocab.eos_id, vocab.eot_id), (Some(4092), Some(4093)));
    assert_eq!(vocab.eos_id, theirs.eos_id);
    let back = Tokenizer::from_gguf_vocab(&vocab).expect("read back");
    let mut stops = back.stop_ids().to_vec();
    stops.sort_unstable();
    let mut want = hf.stop_ids().to_vec();
    want.sort_unstable();
    assert_eq!(stops, want);
    let text = "Hello, world! <|eot_id|> ünïcödé";
    assert_eq!(
        back.encode(text, true, true).unwrap(),
        hf.encode(text, true, true).unwrap()
    );
}
