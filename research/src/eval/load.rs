//! Reading what `eval` measures: the hub (queries and gallery of an index, by metadata), the
//! gallery of a collaboratively probed index, the text setting, and raw logits from a manifest.

use super::*;

/// The labelled entries of an index, split into queries and gallery.
#[derive(Debug)]
pub(super) struct Hub {
    /// Every usable entry: z-normalized descriptor, label id, model id as group.
    pub(super) all: Rows,
    /// Positions in `all` of the query entries (whose label the gallery holds) and gallery
    /// entries.
    pub(super) queries: Vec<usize>,
    pub(super) gallery: Vec<usize>,
    pub(super) labels: Vec<String>,
    pub(super) query_models: usize,
    pub(super) gallery_models: usize,
    /// Entry id of each row of `all`.
    pub(super) entry_ids: Vec<u64>,
    /// Query entries left out because the gallery has no logit of their concept.
    pub(super) unanswerable: usize,
    /// Constant logits (stored as zeros), left out.
    pub(super) constant: usize,
    /// Names of the gallery models.
    pub(super) gallery_names: std::collections::HashSet<String>,
    /// A name that two gallery models share (models may share names; `--collab` cannot match
    /// them by name then).
    pub(super) shared_gallery_name: Option<String>,
}

impl Hub {
    /// The label id of each label name (its position in `labels`).
    pub(super) fn label_ids(&self) -> HashMap<&str, u32> {
        self.labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_str(), i as u32))
            .collect()
    }
}

pub(super) fn load_hub(
    index: &Arc<Index>,
    split: &(String, String),
    restrict: Option<&(String, String)>,
) -> Result<Hub> {
    let raw = index.raw();
    let p = raw.num_probes();
    let mut all = Rows {
        probes: p,
        ..Default::default()
    };
    let mut labels: Vec<String> = Vec::new();
    let mut label_ids: HashMap<String, u32> = HashMap::new();
    let mut is_query = Vec::new();
    let mut entry_ids = Vec::new();
    let mut constant = 0;
    let (mut query_models, mut gallery_models) = (0, 0);
    let mut gallery_names = std::collections::HashSet::new();
    let mut shared_gallery_name = None;
    for m in 0..raw.model_count() {
        let info = raw.model(m).plain()?;
        let has =
            |(key, value): &(String, String)| info.meta.iter().any(|(k, v)| k == key && v == value);
        if restrict.is_some_and(|r| !has(r)) {
            continue;
        }
        let query = has(split);
        if query {
            query_models += 1;
        } else {
            gallery_models += 1;
            if !gallery_names.insert(info.name.clone()) {
                shared_gallery_name.get_or_insert_with(|| info.name.clone());
            }
        }
        for e in info.first_entry..info.first_entry + u64::from(info.logit_count) {
            let Some(label) = raw.entry_label(e).plain()? else {
                bail!(
                    "entry {e} (model {:?}) has no label: eval needs every logit's concept \
                     (append with --labels)",
                    info.name
                );
            };
            let d = raw.descriptor(e).plain()?;
            if d.iter().all(|&x| x == 0.0) {
                constant += 1;
                continue;
            }
            let next = label_ids.len() as u32;
            let id = *label_ids.entry(label.clone()).or_insert_with(|| {
                labels.push(label);
                next
            });
            all.values.extend(d);
            all.label.push(id);
            all.group.push(m as u32);
            is_query.push(query);
            entry_ids.push(e);
        }
    }
    ensure!(
        query_models > 0 && gallery_models > 0,
        "no split: {query_models} models have {}={} and {gallery_models} do not; eval needs both \
         query and gallery models",
        split.0,
        split.1
    );
    let gallery: Vec<usize> = (0..all.len()).filter(|&i| !is_query[i]).collect();
    let mut in_gallery = vec![false; labels.len()];
    for &i in &gallery {
        in_gallery[all.label[i] as usize] = true;
    }
    let candidates: Vec<usize> = (0..all.len()).filter(|&i| is_query[i]).collect();
    let queries: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|&i| in_gallery[all.label[i] as usize])
        .collect();
    ensure!(
        !queries.is_empty(),
        "no query logit has its concept among the gallery's labels"
    );
    all.source = Some(Source {
        index: Arc::clone(index),
        entries: entry_ids.clone(),
    });
    Ok(Hub {
        unanswerable: candidates.len() - queries.len(),
        all,
        queries,
        gallery,
        labels,
        query_models,
        gallery_models,
        entry_ids,
        constant,
        gallery_names,
        shared_gallery_name,
    })
}

/// The gallery of a collaboratively probed index: its models that are gallery models of `hub`
/// (by name), every one of them, each logit with the label ids of `hub`.
pub(super) fn load_gallery(index: &Arc<Index>, hub: &Hub) -> Result<Rows> {
    let raw = index.raw();
    ensure!(
        raw.num_probes() == hub.all.probes,
        "{} probes, the evaluated index has {}",
        raw.num_probes(),
        hub.all.probes
    );
    let ids = hub.label_ids();
    let mut rows = Rows {
        probes: hub.all.probes,
        ..Default::default()
    };
    let mut entries = Vec::new();
    let mut models = 0;
    for m in 0..raw.model_count() {
        let info = raw.model(m).plain()?;
        if !hub.gallery_names.contains(&info.name) {
            continue;
        }
        models += 1;
        for e in info.first_entry..info.first_entry + u64::from(info.logit_count) {
            let label = raw.entry_label(e).plain()?.unwrap_or_default();
            let Some(&id) = ids.get(label.as_str()) else {
                continue;
            };
            let d = raw.descriptor(e).plain()?;
            if d.iter().all(|&x| x == 0.0) {
                continue;
            }
            rows.values.extend(d);
            rows.label.push(id);
            rows.group.push(m as u32);
            entries.push(e);
        }
    }
    ensure!(
        models == hub.gallery_names.len(),
        "holds {models} of the {} gallery models of the evaluated index (matched by name)",
        hub.gallery_names.len()
    );
    rows.source = Some(Source {
        index: Arc::clone(index),
        entries,
    });
    Ok(rows)
}

/// Text queries: each concept of the file that some logit of the index carries.
pub(super) fn text_setting(args: &Args, path: &Path, index: &Index, hub: &Hub) -> Result<Setting> {
    let raw = index.raw();
    let Some((emb, dim)) = raw.probe_embeddings().plain()? else {
        bail!(
            "{}: the index has no probe embeddings; run `probes embed` before evaluating text \
             queries",
            args.index.display()
        );
    };
    let concepts = read_lines(path, "--text-concepts")?;
    let ids = hub.label_ids();
    let embeddings: Vec<Vec<f32>> = match (&args.text_embeddings, &args.clip_text) {
        (Some(file), _) => {
            let m = npy::read_matrix(file, "[concepts, d]")?;
            ensure!(
                m.rows == concepts.len() && m.cols == dim,
                "{}: shape [{}, {}], expected [{}, {dim}] (one row per line of {})",
                file.display(),
                m.rows,
                m.cols,
                concepts.len(),
                path.display()
            );
            m.data.chunks_exact(dim).map(<[f32]>::to_vec).collect()
        }
        (None, Some(encoder)) => {
            let tokenizer = args
                .tokenizer
                .as_deref()
                .context("--clip-text needs --tokenizer")?;
            let context_length = args.context_length as usize;
            let spec = TextSpec::from_flags(
                encoder,
                tokenizer,
                context_length,
                MaskArg::Auto,
                args.device,
            )?;
            concepts
                .iter()
                .map(|c| {
                    let text = args.text_template.replace("{}", c);
                    let e = embed_text(&text, &spec)?;
                    ensure!(
                        e.values.len() == dim,
                        "the text encoder returns {} dimensions, the probe embeddings have {dim}",
                        e.values.len()
                    );
                    Ok(e.values)
                })
                .collect::<Result<_>>()?
        }
        (None, None) => {
            bail!("--text-concepts needs --clip-text and --tokenizer, or --text-embeddings")
        }
    };
    let p = raw.num_probes();
    let mut queries = Rows {
        probes: p,
        ..Default::default()
    };
    let mut raw_queries = queries.clone();
    for (c, t) in concepts.iter().zip(&embeddings) {
        let Some(&id) = ids.get(c.as_str()) else {
            continue; // no logit of the index detects it
        };
        let sims = probelog::search::text_similarities(emb, dim, t);
        let mut z = sims.clone();
        measure::zscore(&mut z);
        let g = queries.len() as u32;
        queries.values.extend(z);
        queries.label.push(id);
        queries.group.push(g);
        raw_queries.values.extend(sims);
        raw_queries.label.push(id);
        raw_queries.group.push(g);
    }
    ensure!(
        !queries.label.is_empty(),
        "{}: no concept of the file is a label of the index",
        path.display()
    );
    Ok(Setting {
        name: "text->logit".into(),
        queries,
        gallery: hub.all.clone(),
        raw_queries: Some(raw_queries),
        raw_gallery: None,
    })
}

/// A manifest table, as far as eval needs it to run the model again.
#[derive(Debug, Deserialize)]
pub(super) struct RawManifest {
    pub(super) model: Vec<RawModel>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawModel {
    pub(super) model: Option<PathBuf>,
    pub(super) name: Option<String>,
    pub(super) input_size: Option<u32>,
    pub(super) mean: Option<[f32; 3]>,
    pub(super) std: Option<[f32; 3]>,
    pub(super) batch: Option<u32>,
}

/// Every row of `hub.all` as the model's raw logits over the probes (entry-major).
pub(super) fn raw_logits(
    index: &Index,
    hub: &Hub,
    manifest: &Path,
    probes: &Path,
    device: DeviceArg,
) -> Result<Rows> {
    let text = input::read_text(manifest, "--raw-manifest")?;
    let parsed: RawManifest = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", manifest.display(), excerpt(e.message().trim())))?;
    let base = manifest.parent().unwrap_or(Path::new(""));
    let mut by_name = HashMap::new();
    for (i, m) in parsed.model.into_iter().enumerate() {
        let Some(file) = m.model else { continue };
        let name = match m.name {
            Some(n) => n,
            None => file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let entry = format!(
            "{}: model {} ({})",
            manifest.display(),
            i + 1,
            excerpt(&format!("{name:?}"))
        );
        check_input_settings(m.mean, m.std, m.input_size, m.batch, &entry)?;
        ensure!(
            !by_name.contains_key(&name),
            "{entry}: another model of the manifest has this name; eval matches the index's \
             models by name"
        );
        let spec = InputSpec {
            size: m.input_size,
            mean: m.mean,
            std: m.std,
            batch: m.batch.map_or(DEFAULT_BATCH, |b| b as usize),
        };
        by_name.insert(name, (base.join(file), spec));
    }
    let set = ProbeSet::read(probes)?;
    let raw_index = index.raw();
    ensure!(
        set.id() == raw_index.probe_set(),
        "{}: not the index's probe set",
        probes.display()
    );
    let prober = Prober::new(set, device)?;
    let p = hub.all.probes;
    let mut out = Rows {
        probes: p,
        values: vec![0f32; hub.all.values.len()],
        label: hub.all.label.clone(),
        group: hub.all.group.clone(),
        source: None,
    };
    let mut cache: HashMap<u32, (u64, Vec<f32>, usize)> = HashMap::new();
    for (row, &e) in hub.entry_ids.iter().enumerate() {
        let m = hub.all.group[row];
        if !cache.contains_key(&m) {
            let info = raw_index.model(u64::from(m)).plain()?;
            let (path, spec) = by_name.get(&info.name).with_context(|| {
                format!("model {:?} is not in {}", info.name, manifest.display())
            })?;
            input::require_regular(path, &format!("the model file of {:?}", info.name))?;
            let probed = prober
                .probe(path, spec, None, &|| {})
                .with_context(|| format!("model {:?} ({})", info.name, path.display()))?;
            ensure!(
                probed.num_logits == info.logit_count as usize,
                "model {:?}: {} logits, the index holds {}",
                info.name,
                probed.num_logits,
                info.logit_count
            );
            cache.clear(); // rows come model by model
            cache.insert(m, (info.first_entry, probed.logits, probed.num_logits));
        }
        let (first, logits, l) = &cache[&m];
        let j = (e - first) as usize;
        for (pr, v) in out.values[row * p..(row + 1) * p].iter_mut().enumerate() {
            *v = logits[pr * l + j];
        }
    }
    Ok(out)
}
