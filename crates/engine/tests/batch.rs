//! The continuous-batching engine thread, driven directly (as the Python
//! package does) on the built-in demo model: batched greedy text equals one
//! `Engine::generate` per prompt, sampled text equals it for the same seed,
//! a dropped receiver frees its slot, admission is bounded, bad jobs are
//! refused, and tasks run on the engine thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bitnet_engine::batch::{self, BatchConfig, Event, EventReceiver, Job, NoObserver, Outcome};
use bitnet_engine::{
    Engine, EngineOptions, Error, GenerationParams, ModelLocation, SamplerConfig, StopReason,
};

fn engine() -> Arc<Engine> {
    let opts = EngineOptions {
        threads: 2,
        n_ctx: Some(256),
        ..EngineOptions::default()
    };
    Arc::new(Engine::load(&ModelLocation::Builtin, opts).unwrap())
}

fn params(max_tokens: usize, sampler: SamplerConfig) -> GenerationParams {
    GenerationParams {
        max_tokens,
        sampler,
        ..GenerationParams::default()
    }
}

fn submit(b: &batch::Batcher, prompt: Vec<u32>, params: GenerationParams) -> EventReceiver {
    let (tx, rx) = batch::channel();
    let permit = b.admit().unwrap();
    b.submit(Job {
        prompt,
        params,
        options: Default::default(),
        sink: Box::new(tx),
        permit,
    })
    .unwrap();
    rx
}

/// Reads a job's events to the end.
fn collect(rx: &EventReceiver) -> (String, Outcome) {
    let mut text = String::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Event::Text(t)) => text.push_str(&t),
            Ok(Event::Done(outcome)) => return (text, outcome),
            other => panic!("unexpected {other:?}"),
        }
    }
}

const PROMPTS: [&str; 5] = [
    "Permission is hereby granted, free of charge,",
    "THE SOFTWARE IS PROVIDED \"AS IS\"",
    "Licensed under the Apache License",
    "Redistribution and use in source and binary forms",
    "x",
];

#[test]
fn batched_generation_equals_one_generate_per_prompt() {
    let engine = engine();
    let config = BatchConfig {
        parallel: 3,
        queue: 8,
        prefill_chunk: 7,
    };
    let (b, _thread) = batch::spawn(Arc::clone(&engine), &config, Arc::new(NoObserver)).unwrap();
    let samplers = [
        SamplerConfig::greedy(),
        SamplerConfig {
            seed: 42,
            ..SamplerConfig::default()
        },
    ];
    for sampler in samplers {
        let prompts: Vec<Vec<u32>> = PROMPTS
            .iter()
            .map(|p| engine.tokenize(p).unwrap())
            .collect();
        // More jobs than slots: some wait, and join as others finish.
        let receivers: Vec<EventReceiver> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| submit(&b, p.clone(), params(20 + 5 * i, sampler.clone())))
            .collect();
        for (i, (prompt, rx)) in prompts.iter().zip(&receivers).enumerate() {
            let (text, outcome) = collect(rx);
            let want = engine
                .generate(
                    prompt,
                    &params(20 + 5 * i, sampler.clone()),
                    false,
                    &mut |_| true,
                )
                .unwrap();
            assert_eq!(text, want.text, "prompt {i}");
            assert_eq!(outcome.reason, want.stop_reason, "prompt {i}");
            assert_eq!(outcome.prompt_tokens, prompt.len());
            assert_eq!(outcome.completion_tokens, want.tokens.len());
        }
    }
}

#[test]
fn a_dropped_receiver_frees_its_slot() {
    let engine = engine();
    let config = BatchConfig {
        parallel: 1,
        queue: 1,
        prefill_chunk: 64,
    };
    let (b, _thread) = batch::spawn(Arc::clone(&engine), &config, Arc::new(NoObserver)).unwrap();
    let prompt = engine.tokenize("Permission").unwrap();
    let endless = GenerationParams {
        ignore_eos: true,
        ..params(200, SamplerConfig::greedy())
    };
    let first = submit(&b, prompt.clone(), endless.clone());
    // Wait until it is generating, then queue a second job behind it.
    assert!(matches!(
        first.recv_timeout(Duration::from_secs(30)),
        Ok(Event::Text(_))
    ));
    let second = submit(&b, prompt.clone(), params(3, SamplerConfig::greedy()));
    // Slot and queue are full.
    assert_eq!(b.admit().err().map(|e| e.limit), Some(2));
    let t0 = Instant::now();
    drop(first);
    let (_, outcome) = collect(&second);
    assert_eq!(outcome.reason, StopReason::MaxTokens);
    assert_eq!(outcome.completion_tokens, 3);
    // The first job was dropped long before its 200 tokens.
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert_eq!(b.running(), 0);
    assert!(b.admit().is_ok());
}

#[test]
fn bad_jobs_are_refused_and_tasks_run_on_the_engine_thread() {
    let engine = engine();
    let (b, thread) = batch::spawn(
        Arc::clone(&engine),
        &BatchConfig::default(),
        Arc::new(NoObserver),
    )
    .unwrap();
    let job = |prompt: Vec<u32>| Job {
        prompt,
        params: GenerationParams::default(),
        options: Default::default(),
        sink: Box::new(batch::channel().0),
        permit: b.admit().unwrap(),
    };
    assert!(matches!(b.submit(job(Vec::new())), Err(Error::EmptyPrompt)));
    assert!(matches!(
        b.submit(job(vec![1; 257])),
        Err(Error::PromptTooLong {
            n_tokens: 257,
            n_ctx: 256
        })
    ));
    // A task sees the engine and returns its result; one that panics is an
    // error and the thread goes on.
    let ids = engine.tokenize("Permission is").unwrap();
    let logits = b.run(move |e| e.logits(&ids)).unwrap().unwrap();
    assert_eq!(logits.len() % engine.model().hparams().n_vocab, 0);
    assert!(matches!(
        b.run(|_| -> u32 { panic!("boom") }),
        Err(Error::TaskPanicked)
    ));
    assert_eq!(b.run(|e| e.n_ctx()).unwrap(), 256);
    // Shutdown: queued and new work is refused, and the thread ends.
    b.shutdown(Duration::ZERO);
    let rx = {
        let (tx, rx) = batch::channel();
        let _ = b.submit(Job {
            prompt: vec![1],
            params: GenerationParams::default(),
            options: Default::default(),
            sink: Box::new(tx),
            permit: b.admit().unwrap(),
        });
        rx
    };
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(10)),
        Ok(Event::Failed(batch::Failure::ShuttingDown)) | Err(batch::RecvError::Disconnected)
    ));
    drop(b);
    thread.join().unwrap();
}

#[test]
fn logits_at_every_position_match_the_last_position_of_generate() {
    let engine = engine();
    let ids = engine.tokenize(PROMPTS[0]).unwrap();
    let all = engine.logits(&ids).unwrap();
    let n_vocab = engine.model().hparams().n_vocab;
    assert_eq!(all.len(), ids.len() * n_vocab);
    let last = engine
        .generate(&ids, &params(1, SamplerConfig::greedy()), true, &mut |_| {
            true
        })
        .unwrap()
        .prompt_logits
        .unwrap();
    // The head's dense product sums in a different order for one row than
    // for several (the README's 1.3e-5); everything before it is exact.
    let close = |a: &[f32], b: &[f32]| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-4)
    };
    let diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max)
    };
    let tail = &all[(ids.len() - 1) * n_vocab..];
    eprintln!("last row vs generate: {:e}", diff(tail, &last));
    assert!(close(tail, &last));
    // Each prefix's rows equal the corresponding rows of the whole run.
    let prefix = engine.logits(&ids[..3]).unwrap();
    eprintln!("prefix rows: {:e}", diff(&prefix, &all[..3 * n_vocab]));
    assert!(close(&prefix, &all[..3 * n_vocab]));
    assert!(matches!(
        engine.logits(&[n_vocab as u32]),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn logprobs_are_the_log_softmax_of_the_raw_logits_of_each_generated_token() {
    let engine = engine();
    let (b, _thread) = batch::spawn(
        Arc::clone(&engine),
        &BatchConfig::default(),
        Arc::new(NoObserver),
    )
    .unwrap();
    let prompt = engine.tokenize(PROMPTS[0]).unwrap();
    // Sampled at temperature 0.7 with top-k: the reported probabilities are
    // still those of the raw logits.
    let sampler = SamplerConfig {
        temperature: 0.7,
        top_k: 5,
        seed: 3,
        ..SamplerConfig::default()
    };
    let (tx, rx) = batch::channel();
    b.submit(Job {
        prompt: prompt.clone(),
        params: params(12, sampler.clone()),
        options: bitnet_engine::SequenceOptions {
            logprobs: Some(4),
            ..Default::default()
        },
        sink: Box::new(tx),
        permit: b.admit().unwrap(),
    })
    .unwrap();
    let mut text = String::new();
    let mut reported = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)).unwrap() {
            Event::Logprobs(lp) => reported.push(lp),
            Event::Text(t) => text.push_str(&t),
            Event::Done(outcome) => {
                assert_eq!(outcome.completion_tokens, reported.len());
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // The same tokens and text as without logprobs.
    let want = engine
        .generate(&prompt, &params(12, sampler), false, &mut |_| true)
        .unwrap();
    assert_eq!(text, want.text);
    let tokens: Vec<u32> = reported.iter().map(|lp| lp.token).collect();
    assert_eq!(tokens, want.tokens);
    // Against the logits of the whole sequence at once.
    let n_vocab = engine.model().hparams().n_vocab;
    let mut ids = prompt.clone();
    ids.extend(&want.tokens);
    let logits = engine.logits(&ids).unwrap();
    for (k, lp) in reported.iter().enumerate() {
        let row = &logits[(prompt.len() + k - 1) * n_vocab..][..n_vocab];
        let nll = bitnet_engine::negative_log_likelihood(row, lp.token);
        assert!(
            (f64::from(lp.logprob) + nll).abs() < 1e-4,
            "token {k}: {lp:?} vs {nll}"
        );
        assert_eq!(lp.top.len(), 4);
        let mut order: Vec<u32> = (0..n_vocab as u32).collect();
        order.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
        let top: Vec<u32> = lp.top.iter().map(|&(id, _)| id).collect();
        assert_eq!(top, order[..4], "token {k}");
        for &(id, v) in &lp.top {
            let nll = bitnet_engine::negative_log_likelihood(row, id);
            assert!((f64::from(v) + nll).abs() < 1e-4);
        }
    }
}
