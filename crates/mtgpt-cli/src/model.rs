//! Model verbs: `model init`, `generate`, `export`, `import`, `embed`, `logits`, `bench`.
use anyhow::bail;
use clap::{Args, Subcommand};
use mtgpt_core::{ModelConfig, Precision};
use mtgpt_model::{GenerateConfig, Model, generate};
use mtgpt_text::TextTokenizer;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// A trunk folder and its tokenizer (checked against the vocabulary); a run folder stands
/// for its `best/` or `model/`.
fn load(path: &Path, task: Option<&str>) -> anyhow::Result<(Model, TextTokenizer)> {
    let dir = crate::args::model_dir(path)?;
    let model = Model::load_for_task(&dir, crate::args::device(), task)?;
    let tok = mtgpt_tasks::load_tokenizer(&dir, model.gpt.config.vocab_size)?;
    Ok((model, tok))
}

/// `mtgpt model ...`.
#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Create a freshly initialised multi-task model folder (trunk + one head per task).
    Init(InitArgs),
}

/// `mtgpt model init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Config whose `[model]` gives the shape.
    #[command(flatten)]
    config: crate::args::ConfigArgs,
    /// The tokenizer (its size becomes the vocabulary).
    #[arg(long)]
    tokenizer: PathBuf,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

/// Runs a `model` verb.
pub fn model(cmd: &ModelCommand) -> anyhow::Result<()> {
    match cmd {
        ModelCommand::Init(a) => {
            let config = a.config.load()?;
            let tok = TextTokenizer::load(&a.tokenizer)?;
            let mut mc = config.model.clone();
            mc.vocab_size = tok.vocab_size();
            // One head per task; label sets from the config or the training data.
            let mut heads = Vec::new();
            for t in &config.tasks {
                let labels = match (&t.labels, t.kind.has_label_set()) {
                    (Some(l), _) => l.clone(),
                    (None, true) => {
                        let opts = mtgpt_text::data::ReadOptions {
                            skip_bad: config.preprocess.skip_bad,
                            labels: None,
                        };
                        let (ex, _) = mtgpt_text::data::read_examples(&t.train, t.kind, opts)?;
                        mtgpt_text::data::collect_labels(&ex)
                    }
                    (None, false) => Vec::new(),
                };
                if tok.task_id(&t.name).is_none() {
                    tracing::warn!(
                        "the tokenizer has no <|task:{}|> token; train one with --task {}",
                        t.name,
                        t.name
                    );
                }
                heads.push(mtgpt_tasks::TaskHead::from_config(t, labels));
            }
            tch::manual_seed(config.seed as i64);
            let specs: Vec<_> = heads.iter().map(mtgpt_tasks::TaskHead::spec).collect();
            let m = mtgpt_tasks::MultiTaskModel::new(&mc, &specs, crate::args::device())?;
            if let Some(dir) = &config.init {
                let r = mtgpt_tasks::init_trunk_for(&m.vs, dir, &tok)?;
                tracing::info!(
                    "trunk from {} ({} tensors, {} new token rows)",
                    dir.display(),
                    r.tensors,
                    r.new_rows
                );
            }
            m.save(&a.out, &heads, Some(&config.to_toml_string()))?;
            tok.save(&a.out.join("tokenizer.json"))?;
            tracing::info!(
                "{} trunk parameters, {} heads → {}",
                mc.num_parameters(),
                heads.len(),
                a.out.display()
            );
            Ok(())
        }
    }
}

/// `mtgpt generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Model folder (weights, config.json, tokenizer.json).
    #[arg(long)]
    model: PathBuf,
    /// With per-task adapters: the task whose adapter the trunk goes through.
    #[arg(long)]
    task: Option<String>,
    /// The prompt (repeat for a batch).
    #[arg(long, required = true)]
    prompt: Vec<String>,
    /// Most new tokens.
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// Greedy decoding.
    #[arg(long, conflicts_with_all = ["temperature", "top_k", "top_p"])]
    greedy: bool,
    /// Sampling temperature.
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// Keep the k most likely tokens (0 = all).
    #[arg(long, default_value_t = 0)]
    top_k: i64,
    /// Nucleus sampling mass.
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    /// Penalty for repeated tokens (> 1 discourages).
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f64,
    /// No n-gram of this many tokens twice in one output (0 = off).
    #[arg(long, default_value_t = 0)]
    no_repeat_ngram_size: usize,
    /// Beam search with this many beams.
    #[arg(long, default_value_t = 1)]
    num_beams: usize,
    /// No stop token before this many new tokens.
    #[arg(long, default_value_t = 0)]
    min_new_tokens: usize,
    /// Extra stop text (must be one token, e.g. `<|sep|>`); `<|endoftext|>` always stops.
    #[arg(long)]
    stop: Vec<String>,
    /// Print the continuation's token ids (comma-separated, one line per prompt) instead of
    /// the text.
    #[arg(long)]
    print_ids: bool,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Generates from prompts and prints prompt + continuation, one block per prompt.
pub fn generate_cmd(a: &GenerateArgs) -> anyhow::Result<()> {
    let (m, tok) = load(&a.model, a.task.as_deref())?;
    let sp = tok.special();
    let mut stop = vec![sp.endoftext as i64];
    for s in &a.stop {
        let ids = tok.encode_ids(s)?;
        if ids.len() != 1 {
            bail!(
                "--stop {s:?} is {} tokens; a stop text must be one token",
                ids.len()
            );
        }
        stop.push(ids[0] as i64);
    }
    let prompts: Vec<Vec<i64>> = a
        .prompt
        .iter()
        .map(|p| Ok(tok.encode_ids(p)?.into_iter().map(i64::from).collect()))
        .collect::<anyhow::Result<_>>()?;
    let cfg = GenerateConfig {
        max_new_tokens: a.max_new_tokens,
        greedy: a.greedy,
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        repetition_penalty: a.repetition_penalty,
        stop_tokens: stop,
        num_beams: a.num_beams,
        seed: a.seed,
        no_repeat_ngram_size: a.no_repeat_ngram_size,
        prefix_prompt: false,
        min_new_tokens: a.min_new_tokens,
    };
    let outs = generate(&m.gpt, &prompts, sp.pad as i64, &cfg)?;
    for (p, o) in a.prompt.iter().zip(outs) {
        if a.print_ids {
            let ids: Vec<String> = o.iter().map(i64::to_string).collect();
            println!("{}", ids.join(","));
            continue;
        }
        let ids: Vec<u32> = o.iter().map(|&i| i as u32).collect();
        println!("{p}{}", tok.decode(&ids, true)?);
    }
    Ok(())
}

/// `mtgpt export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Model folder.
    #[arg(long)]
    model: PathBuf,
    /// Output format.
    #[arg(long, default_value = "hf-gpt2", value_parser = ["hf-gpt2"])]
    format: String,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

/// Writes a Hugging Face GPT-2 folder.
pub fn export(a: &ExportArgs) -> anyhow::Result<()> {
    let dir = crate::args::model_dir(&a.model)?;
    let mut m = Model::load(&dir, Device::Cpu)?;
    m.save(&a.out)?;
    mtgpt_model::io::copy_tokenizer(&dir, &a.out)?;
    // Adapters go along in PEFT's layout, on the base trunk just written.
    if mtgpt_model::peft::load_adapters(&mut m.gpt, &m.vs.root(), &dir)? {
        mtgpt_model::peft::save_adapters(&m.gpt, &a.out)?;
        tracing::info!(
            "adapters in {}: load one with peft.PeftModel.from_pretrained(base, DIR)",
            a.out.join(mtgpt_model::peft::ADAPTERS).display()
        );
    }
    tracing::info!(
        "{} → {} ({}: load with transformers.GPT2LMHeadModel.from_pretrained)",
        dir.display(),
        a.out.display(),
        a.format
    );
    Ok(())
}

/// `mtgpt import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// A Hugging Face GPT-2 folder (`config.json` + `model.safetensors`).
    #[arg(long)]
    hf: PathBuf,
    /// Output model folder.
    #[arg(long)]
    out: PathBuf,
}

/// Reads a Hugging Face GPT-2 folder into a model folder.
pub fn import(a: &ImportArgs) -> anyhow::Result<()> {
    let m = Model::load(&a.hf, Device::Cpu)?;
    let tok_path = a.hf.join("tokenizer.json");
    if !tok_path.exists() {
        m.save(&a.out)?;
        tracing::warn!(
            "{} has no tokenizer.json: add one (mtgpt tokenizer train) before generating",
            a.hf.display()
        );
    } else {
        // A tokenizer from elsewhere (GPT-2's has only <|endoftext|>) gets mtgpt's special
        // tokens; the embedding grows by as many mean-initialised rows.
        let (tok, added) = mtgpt_text::TextTokenizer::load_with_tokens(&tok_path, &[])?;
        if added.is_empty() && tok.vocab_size() <= m.gpt.config.vocab_size {
            m.save(&a.out)?;
            mtgpt_model::io::copy_tokenizer(&a.hf, &a.out)?;
        } else {
            let mut config = m.gpt.config.clone();
            config.vocab_size = tok.vocab_size().max(config.vocab_size);
            drop(m);
            let grown = Model::new(&config, Device::Cpu)?;
            mtgpt_tasks::init_trunk_for(&grown.vs, &a.hf, &tok)?;
            grown.save(&a.out)?;
            tok.save(&a.out.join("tokenizer.json"))?;
            tracing::info!(
                "appended {} token(s) the tokenizer lacked ({}); the embedding has {} rows now",
                added.len(),
                added.join(" "),
                config.vocab_size
            );
            tracing::info!(
                "{} parameters imported → {}",
                config.num_parameters(),
                a.out.display()
            );
            return Ok(());
        }
    }
    tracing::info!(
        "{} parameters imported → {}",
        m.gpt.config.num_parameters(),
        a.out.display()
    );
    Ok(())
}

/// `mtgpt embed`.
#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// Model folder.
    #[arg(long)]
    model: PathBuf,
    /// With per-task adapters: the task whose adapter the trunk goes through.
    #[arg(long)]
    task: Option<String>,
    /// JSONL with a `text` field per line (`-` reads standard input).
    #[arg(long)]
    input: PathBuf,
    /// Pooling over real tokens.
    #[arg(long, default_value = "mean", value_parser = ["mean", "last"])]
    pool: String,
    /// Layer: 0 = embeddings, i = after block i; default: the final normed output.
    #[arg(long)]
    layer: Option<usize>,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 16)]
    batch: usize,
}

/// Writes `{"text": ..., "embedding": [...]}` per input line.
pub fn embed(a: &EmbedArgs) -> anyhow::Result<()> {
    let (m, tok) = load(&a.model, a.task.as_deref())?;
    let n_layer = m.gpt.config.n_layer;
    if a.layer.is_some_and(|l| l > n_layer) {
        bail!(
            "--layer {} but the model has {n_layer} blocks (0..={n_layer})",
            a.layer.unwrap_or(0)
        );
    }
    let pooling: mtgpt_model::embed::Pooling = a.pool.parse()?;
    let mut texts = Vec::new();
    for (line, v) in mtgpt_text::jsonl::read_values(&a.input)? {
        texts.push(mtgpt_text::jsonl::required_str(&v, "text", &a.input, line)?.to_string());
    }
    let block = m.gpt.config.block_size;
    let pad = tok.special().pad as i64;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for chunk in texts.chunks(a.batch.max(1)) {
        let enc: Vec<Vec<i64>> = chunk
            .iter()
            .map(|t| {
                Ok(tok
                    .encode_ids(t)?
                    .into_iter()
                    .take(block)
                    .map(i64::from)
                    .collect::<Vec<_>>())
            })
            .collect::<anyhow::Result<_>>()?;
        let t = enc.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let mut ids = vec![pad; chunk.len() * t];
        let mut mask = vec![0i64; chunk.len() * t];
        for (r, e) in enc.iter().enumerate() {
            ids[r * t..r * t + e.len()].copy_from_slice(e);
            mask[r * t..r * t + e.len()].iter_mut().for_each(|x| *x = 1);
        }
        let dev = m.gpt.device();
        let ids = Tensor::from_slice(&ids)
            .view([chunk.len() as i64, t as i64])
            .to_device(dev);
        let mask_t = Tensor::from_slice(&mask)
            .view([chunk.len() as i64, t as i64])
            .to_device(dev);
        let vectors =
            tch::no_grad(|| mtgpt_model::embed::embed(&m.gpt, &ids, &mask_t, a.layer, pooling))?;
        for (r, text) in chunk.iter().enumerate() {
            let v: Vec<f32> = Vec::try_from(&vectors.get(r as i64).to_device(Device::Cpu))?;
            serde_json::to_writer(&mut out, &serde_json::json!({"text": text, "embedding": v}))?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `mtgpt logits` (for checking interchange with other implementations).
#[derive(Args, Debug)]
pub struct LogitsArgs {
    /// Model folder.
    #[arg(long)]
    model: PathBuf,
    /// With per-task adapters: the task whose adapter the trunk goes through.
    #[arg(long)]
    task: Option<String>,
    /// Token ids, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    ids: Vec<i64>,
}

/// Prints the logits of one sequence as JSON `[[f32; vocab]; seq]`.
pub fn logits(a: &LogitsArgs) -> anyhow::Result<()> {
    let m = Model::load_for_task(
        &crate::args::model_dir(&a.model)?,
        Device::Cpu,
        a.task.as_deref(),
    )?;
    let ids = Tensor::from_slice(&a.ids).view([1, -1]);
    let l = tch::no_grad(|| -> anyhow::Result<Tensor> {
        Ok(m.gpt
            .logits(&m.gpt.forward(&ids, None, None, false)?.hidden))
    })?;
    let rows: Vec<Vec<f32>> = (0..a.ids.len() as i64)
        .map(|i| Vec::try_from(&l.get(0).get(i)))
        .collect::<Result<_, _>>()?;
    println!("{}", serde_json::to_string(&rows)?);
    Ok(())
}

/// `mtgpt bench ...`.
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Full training steps (forward, backward, clip, AdamW) on random tokens.
    Train(BenchShape),
    /// Decode speed with and without the KV cache.
    Generate(BenchShape),
}

/// A model shape and workload for `mtgpt bench`.
#[derive(Args, Debug)]
pub struct BenchShape {
    /// Blocks.
    #[arg(long, default_value_t = 4)]
    layers: usize,
    /// Heads.
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Width.
    #[arg(long, default_value_t = 256)]
    dim: usize,
    /// Sequence length.
    #[arg(long, default_value_t = 128)]
    block: usize,
    /// Sequences per step.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Vocabulary.
    #[arg(long, default_value_t = 8000)]
    vocab: usize,
    /// Timed steps (train) or new tokens (generate).
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// fp32 or bf16.
    #[arg(long, default_value = "fp32", value_parser = ["fp32", "bf16"])]
    precision: String,
    /// Skip the ceilings measured after the run (matrix-multiply peak and the step's
    /// matrix-product floor for `train`; per-step latency at full context and the
    /// memory-bandwidth floor for `generate`).
    #[arg(long)]
    no_ceiling: bool,
}

impl BenchShape {
    fn config(&self) -> ModelConfig {
        ModelConfig {
            n_layer: self.layers,
            n_head: self.heads,
            d_model: self.dim,
            d_ff: 4 * self.dim,
            block_size: self.block,
            vocab_size: self.vocab,
            dropout: 0.0,
            layer_norm_eps: 1e-5,
            precision: if self.precision == "bf16" {
                Precision::Bf16
            } else {
                Precision::Fp32
            },
            layer_heads: Vec::new(),
            layer_d_ff: Vec::new(),
        }
    }
}

/// Runs a benchmark (`mtgpt_train::bench`) and prints its `key=value` figures.
pub fn bench(cmd: &BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Train(s) => {
            let b = mtgpt_train::bench::bench_train(
                &s.config(),
                s.batch,
                s.steps,
                !s.no_ceiling,
                crate::args::device(),
            )?;
            println!("{b}");
        }
        BenchCommand::Generate(s) => {
            let b = mtgpt_train::bench::bench_generate(
                &s.config(),
                s.steps,
                !s.no_ceiling,
                crate::args::device(),
            )?;
            println!("{b}");
        }
    }
    Ok(())
}
