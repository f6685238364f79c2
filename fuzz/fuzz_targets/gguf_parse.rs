//! The GGUF container: header, metadata of every type, tensor table, data
//! ranges, and the typed metadata getters and tokenizer description the
//! engine reads from it.
#![no_main]

use bitnet_gguf::GgufFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_vec(data.to_vec()) else {
        return;
    };
    let md = file.metadata();
    for (key, value) in md.iter() {
        let _ = (key.len(), value.type_description(), value.to_string().len());
        let _ = (md.get_u64(key), md.get_f32(key), md.get_str_array(key));
        let _ = (md.get_i64_array(key), md.get_f32_array(key));
    }
    for t in file.tensors() {
        if let Ok(bytes) = file.tensor_data(t) {
            std::hint::black_box(bytes.first());
        }
    }
    let _ = bitnet_model::gguf_hparams(&file);
    // The tokenizer the engine would build from this file.
    if let Ok(vocab) = bitnet_engine::gguf_vocab(&file)
        && let Ok(tok) = bitnet_tokenizer::Tokenizer::from_gguf_vocab(&vocab)
        && let Ok(ids) = tok.encode("Hello, wörld! <|eot_id|> 123", true, true)
    {
        let _ = tok.decode(&ids, false);
    }
});
