//! The S3 backend: aws-sdk-s3 with the whole AWS credential chain and any S3-compatible endpoint.
//! Bodies are streamed from disk; parts in flight are limited globally; a multipart upload that
//! fails is aborted.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart, Delete,
    ObjectIdentifier, ServerSideEncryption, StorageClass,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::byte_stream::Length;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::Semaphore;

use super::{Head, Listed, RequestCounter, RequestKind, Source, StoreOptions, Written};
use crate::checksum::{ChecksumKind, Digest, Hasher, crc64_to_base64};
use crate::config::{S3Settings, Sse, UploadSizing};
use crate::error::{Error, Result};
use crate::meta::ObjectMeta;

/// Attempts of one part before the whole upload is given up (and aborted).
const PART_ATTEMPTS: u32 = 5;

/// Read size of file bodies and write size of downloads. The SDK's default (64 KiB) costs one
/// blocking-pool round trip per 64 KiB; 1 MiB cuts that 16-fold, and with at most
/// `max_parts_in_flight` streams the memory stays a few MiB.
const IO_BUFFER: usize = 1 << 20;

/// An S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    opts: StoreOptions,
    parts: Arc<Semaphore>,
    pub(super) requests: Arc<RequestCounter>,
    /// Ids of the multipart uploads this process is still working on; [`S3Store::tidy`] aborts
    /// the others.
    active: Arc<Mutex<HashSet<String>>>,
    /// Longest time one request attempt may take.
    request_timeout: Option<Duration>,
}

impl S3Store {
    /// Builds the client: credentials from the flags or the default chain, region from the flag,
    /// the chain, or us-east-1; path-style with a custom endpoint; checksums only when required
    /// (several S3-compatible servers reject the SDK's default aws-chunked CRC trailer).
    pub async fn new(s: &S3Settings, opts: StoreOptions) -> Result<Self> {
        let region = RegionProviderChain::first_try(s.region.clone().map(Region::new))
            .or_default_provider()
            .or_else(Region::new("us-east-1"));
        let mut timeouts = TimeoutConfig::builder().connect_timeout(Duration::from_secs(5));
        if let Some(t) = s.request_timeout {
            // One attempt of one request (a part at most): a stalled connection is given up
            // after it, and the request is tried again.
            timeouts = timeouts.operation_attempt_timeout(t);
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(region)
            .retry_config(RetryConfig::standard().with_max_attempts(s.max_attempts.max(1)))
            .timeout_config(timeouts.build());
        if let Some(c) = &s.credentials {
            loader = loader.credentials_provider(Credentials::new(
                c.access_key.clone(),
                c.secret_key.clone(),
                c.session_token.clone(),
                None,
                "tablesnap-command-line",
            ));
        }
        let sdk = loader.load().await;
        let mut b = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(s.force_path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(e) = &s.endpoint {
            b = b.endpoint_url(e);
        }
        Ok(Self {
            client: Client::from_conf(b.build()),
            bucket: s.bucket.clone(),
            parts: Arc::new(Semaphore::new(opts.max_parts_in_flight.max(1))),
            opts,
            requests: Arc::default(),
            active: Arc::default(),
            request_timeout: s.request_timeout,
        })
    }

    /// HeadBucket: NotFound / Permission / Transient as the server says.
    pub async fn check(&self) -> Result<()> {
        self.requests.add(RequestKind::Head, 1);
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| match classify(e, &format!("bucket {}", self.bucket)) {
                // An answer that says the request itself is wrong: with S3-compatible servers
                // that is almost always a region they do not serve (Garage answers HTTP 400 to
                // every request signed for another region).
                Error::Storage(text) => Error::InvalidConfig(format!(
                    "{text}: the store rejects our requests; is --aws-region {} its region?",
                    self.client
                        .config()
                        .region()
                        .map_or("(none)", |r| r.as_ref())
                )),
                other => other,
            })
    }

    /// Single PUT versus multipart.
    pub fn sizing(&self) -> UploadSizing {
        self.opts.sizing
    }

    /// PUT, or multipart above the single-PUT limit.
    pub async fn put(
        &self,
        key: &str,
        src: Source,
        meta: &ObjectMeta,
        digest: Option<&Digest>,
    ) -> Result<Written> {
        let len = src.len();
        match src {
            Source::File { path, len } if len > self.opts.sizing.max_single_put => {
                self.put_multipart(key, &path, len, meta, digest).await
            }
            src => {
                let _permit = self.parts.acquire().await.expect("semaphore never closed");
                let body = body_of(&src).await?;
                let mut req = self
                    .client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .body(body)
                    .content_length(len as i64)
                    .set_metadata(Some(user_meta(meta)))
                    .set_content_type(meta.content_type.clone());
                match digest {
                    Some(Digest::Md5(h, _)) => {
                        if let Ok(m) = hex::decode(h) {
                            req = req.content_md5(aws_smithy_types::base64::encode(m));
                        }
                    }
                    // A precomputed value: the SDK sends it as a header, no aws-chunked trailer.
                    Some(Digest::Crc64Nvme { whole, .. }) => {
                        req = req.checksum_crc64_nvme(crc64_to_base64(*whole))
                    }
                    None => {}
                }
                // Storage class and encryption apply to every object, indexes included.
                req = self.with_write_options_put(req);
                self.requests.add(RequestKind::Put, 1);
                let sent = if digest.is_some() {
                    // The checksum protects the body; signing it too would cost a SHA-256 of
                    // every in-memory body here and another on the server (file bodies are
                    // streamed unsigned anyway).
                    req.customize().disable_payload_signing().send().await
                } else {
                    req.send().await
                };
                sent.map_err(|e| file_error(e, key, &src))?;
                Ok(Written::Single)
            }
        }
    }

    fn with_write_options_put(
        &self,
        mut req: aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder,
    ) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
        if let Some(c) = &self.opts.write.storage_class {
            req = req.storage_class(StorageClass::from(c.as_str()));
        }
        match &self.opts.write.sse {
            Some(Sse::Aes256) => req = req.server_side_encryption(ServerSideEncryption::Aes256),
            Some(Sse::Kms(id)) => {
                req = req
                    .server_side_encryption(ServerSideEncryption::AwsKms)
                    .ssekms_key_id(id)
            }
            None => {}
        }
        req
    }

    async fn put_multipart(
        &self,
        key: &str,
        path: &Path,
        len: u64,
        meta: &ObjectMeta,
        digest: Option<&Digest>,
    ) -> Result<Written> {
        let part_size = self.opts.sizing.part_size_for(len);
        // A full-object CRC64NVME, in both checksum modes: each part carries its own CRC, which
        // the server checks, and the completion the whole one.
        let crc = digest
            .and_then(Digest::part_crcs)
            .filter(|(_, parts)| parts.len() as u64 == len.div_ceil(part_size).max(1));
        let mut create = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_metadata(Some(user_meta(meta)))
            .set_content_type(meta.content_type.clone());
        if crc.is_some() {
            create = create
                .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
                .checksum_type(ChecksumType::FullObject);
        }
        if let Some(c) = &self.opts.write.storage_class {
            create = create.storage_class(StorageClass::from(c.as_str()));
        }
        match &self.opts.write.sse {
            Some(Sse::Aes256) => {
                create = create.server_side_encryption(ServerSideEncryption::Aes256)
            }
            Some(Sse::Kms(id)) => {
                create = create
                    .server_side_encryption(ServerSideEncryption::AwsKms)
                    .ssekms_key_id(id)
            }
            None => {}
        }
        self.requests.add(RequestKind::Put, 1);
        let created = create.send().await.map_err(|e| classify(e, key))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| {
                Error::Storage(format!(
                    "{key}: CreateMultipartUpload returned no upload id"
                ))
            })?
            .to_string();
        self.active
            .lock()
            .expect("poisoned")
            .insert(upload_id.clone());

        let result = self
            .upload_parts(key, path, len, part_size, &upload_id, crc.map(|c| c.1))
            .await;
        match result {
            Ok(parts) => {
                let n = parts.len() as u32;
                self.requests.add(RequestKind::Put, 1);
                let mut complete = self
                    .client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    );
                if let Some((whole, _)) = crc {
                    complete = complete
                        .checksum_crc64_nvme(crc64_to_base64(whole))
                        .checksum_type(ChecksumType::FullObject);
                }
                let done = complete.send().await;
                match done {
                    Ok(_) => {
                        self.active.lock().expect("poisoned").remove(&upload_id);
                        Ok(Written::Multipart(n))
                    }
                    Err(e) => {
                        let err = classify(e, key);
                        self.abort(key, &upload_id).await;
                        Err(err)
                    }
                }
            }
            Err(e) => {
                self.abort(key, &upload_id).await;
                Err(e)
            }
        }
    }

    async fn upload_parts(
        &self,
        key: &str,
        path: &Path,
        len: u64,
        part_size: u64,
        upload_id: &str,
        crcs: Option<&[u64]>,
    ) -> Result<Vec<CompletedPart>> {
        let count = len.div_ceil(part_size).max(1);
        let jobs = (0..count).map(|i| {
            let offset = i * part_size;
            let this_len = part_size.min(len - offset);
            let part = Part {
                number: i as i32 + 1,
                offset,
                len: this_len,
                crc: crcs.map(|c| c[i as usize]),
            };
            self.upload_part(key, path, upload_id, part)
        });
        // Parts of one file go in parallel too; the global semaphore bounds the total. The first
        // part that fails for good ends the upload: the parts in flight are dropped, the rest
        // never sent (the caller aborts the upload).
        let mut parts: Vec<CompletedPart> = futures::stream::iter(jobs)
            .buffer_unordered(self.opts.max_parts_in_flight.max(1))
            .try_collect()
            .await?;
        parts.sort_by_key(|p| p.part_number());
        Ok(parts)
    }

    async fn upload_part(
        &self,
        key: &str,
        path: &Path,
        upload_id: &str,
        part: Part,
    ) -> Result<CompletedPart> {
        let Part {
            number,
            offset,
            len,
            crc,
        } = part;
        let crc = crc.map(crc64_to_base64);
        let _permit = self.parts.acquire().await.expect("semaphore never closed");
        let mut attempt = 0;
        loop {
            let src = Source::File {
                path: path.to_path_buf(),
                len,
            };
            let body = ByteStream::read_from()
                .path(path)
                .buffer_size(IO_BUFFER)
                .offset(offset)
                .length(Length::Exact(len))
                .build()
                .await
                .map_err(|e| body_error(path, e))?;
            self.requests.add(RequestKind::Put, 1);
            let res = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .content_length(len as i64)
                .set_checksum_crc64_nvme(crc.clone())
                .body(body)
                .send()
                .await;
            match res {
                Ok(out) => {
                    return Ok(CompletedPart::builder()
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .set_checksum_crc64_nvme(crc.clone())
                        .part_number(number)
                        .build());
                }
                Err(e) => {
                    let err = file_error(e, key, &src);
                    attempt += 1;
                    if !err.is_retryable() || attempt >= PART_ATTEMPTS {
                        return Err(err);
                    }
                    tracing::debug!(key, part = number, attempt, error = %err, "retrying part");
                    tokio::time::sleep(crate::retry::delay(attempt, Duration::from_secs(10))).await;
                }
            }
        }
    }

    async fn abort(&self, key: &str, upload_id: &str) {
        // Whatever happens now, this process no longer works on it: a failed abort is retried
        // by the next tidy.
        self.active.lock().expect("poisoned").remove(upload_id);
        for attempt in 0..3 {
            self.requests.add(RequestKind::Put, 1);
            match self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .send()
                .await
            {
                Ok(_) => return,
                Err(e) => {
                    let err = classify(e, key);
                    if matches!(err, Error::NotFound(_)) {
                        return;
                    }
                    tracing::warn!(key, upload_id, error = %err, "could not abort multipart upload; the next rescan tries again");
                    if !err.is_retryable() {
                        return;
                    }
                    tokio::time::sleep(crate::retry::delay(attempt, Duration::from_secs(5))).await;
                }
            }
        }
    }

    /// Aborts the multipart uploads below `prefix` that nobody will finish: not in this process's
    /// hands and begun longer ago than a CreateMultipartUpload attempt can last (left by a killed
    /// run, by a failed abort, or created while its answer was lost). Returns how many.
    pub async fn tidy(&self, prefix: &str) -> Result<usize> {
        let grace =
            self.request_timeout.unwrap_or(Duration::from_secs(600)) + Duration::from_secs(5);
        let before = crate::metrics::now() - grace.as_secs() as i64;
        let mut stale = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        loop {
            self.requests.add(RequestKind::List, 1);
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| classify(e, &format!("listing uploads below {prefix}")))?;
            let active = self.active.lock().expect("poisoned").clone();
            for u in page.uploads() {
                let (Some(k), Some(id)) = (u.key(), u.upload_id()) else {
                    continue;
                };
                let old = u.initiated().is_none_or(|t| t.secs() < before);
                if old && !active.contains(id) {
                    stale.push((k.to_string(), id.to_string()));
                }
            }
            match (page.is_truncated(), page.next_key_marker()) {
                (Some(true), Some(k)) => {
                    key_marker = Some(k.to_string());
                    id_marker = page.next_upload_id_marker().map(str::to_string);
                }
                _ => break,
            }
        }
        let n = stale.len();
        for (key, id) in stale {
            tracing::info!(
                key,
                upload_id = id,
                "aborting an unfinished multipart upload"
            );
            self.abort(&key, &id).await;
        }
        Ok(n)
    }

    /// ListObjectsV2 over every page of `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            self.requests.add(RequestKind::List, 1);
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| classify(e, &format!("listing {prefix}")))?;
            for o in page.contents() {
                let Some(key) = o.key() else { continue };
                out.push(Listed {
                    key: key.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: o.e_tag().map(|e| e.trim_matches('"').to_string()),
                    modified: o.last_modified().map(|t| t.secs()),
                });
            }
            match (page.is_truncated(), page.next_continuation_token()) {
                (Some(true), Some(t)) => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// HeadObject; `None` when the key does not exist.
    pub async fn head(&self, key: &str) -> Result<Option<Head>> {
        self.requests.add(RequestKind::Head, 1);
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
        {
            Ok(h) => Ok(Some(Head {
                size: h.content_length().unwrap_or(0).max(0) as u64,
                etag: h.e_tag().map(|e| e.trim_matches('"').to_string()),
                meta: ObjectMeta {
                    content_type: h.content_type().map(str::to_string),
                    user: h
                        .metadata()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .collect(),
                    // A composite checksum (`...-N`) is not a CRC of the whole object: left out.
                    checksum_crc64nvme: h
                        .checksum_crc64_nvme()
                        .filter(|c| !c.contains('-'))
                        .map(str::to_string),
                },
            })),
            Err(e) => match classify(e, key) {
                Error::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    /// GetObject into memory (indexes, small objects).
    pub async fn get_bytes(&self, key: &str) -> Result<Bytes> {
        self.requests.add(RequestKind::Get, 1);
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| classify(e, key))?;
        let data = out
            .body
            .collect()
            .await
            .map_err(|e| Error::Transient(format!("{key}: {e}")))?;
        Ok(data.into_bytes())
    }

    /// GetObject (ranged when `range` is given) streamed into `file` at the range's offset,
    /// hashed on the way when `hash` says so.
    pub async fn download_range(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
        file: &Path,
        hash: Option<ChecksumKind>,
    ) -> Result<(u64, Option<Digest>)> {
        self.requests.add(RequestKind::Get, 1);
        let mut req = self.client.get_object().bucket(&self.bucket).key(key);
        if let Some((start, end)) = range {
            req = req.range(format!("bytes={start}-{}", end - 1));
        }
        let out = req.send().await.map_err(|e| classify(e, key))?;
        let mut body = out.body;
        let path = file.to_path_buf();
        let f = tokio::task::spawn_blocking(move || {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
        })
        .await
        .expect("open task panicked")
        .map_err(|e| Error::io(file, e))?;
        let f = Arc::new(f);
        // Body chunks are small (16 KiB or so): about 1 MiB of them at a time goes to one
        // positioned vectored write (no copy in user space, no seek), in flight while the next
        // chunks are received.
        let mut offset = range.map_or(0, |r| r.0);
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut pending = 0usize;
        let mut writing: Option<tokio::task::JoinHandle<std::io::Result<()>>> = None;
        let mut n = 0u64;
        let mut hasher = hash.map(Hasher::new);
        let mut done = false;
        while !done {
            match body.next().await {
                Some(chunk) => {
                    let chunk = chunk.map_err(|e| Error::Transient(format!("{key}: {e}")))?;
                    if let Some(h) = hasher.as_mut() {
                        h.update(&chunk);
                    }
                    n += chunk.len() as u64;
                    pending += chunk.len();
                    chunks.push(chunk);
                    if pending < IO_BUFFER && chunks.len() < MAX_IOV {
                        continue;
                    }
                }
                None => done = true,
            }
            if let Some(w) = writing.take() {
                w.await
                    .expect("write task panicked")
                    .map_err(|e| Error::io(file, e))?;
            }
            if chunks.is_empty() {
                continue;
            }
            let batch = std::mem::take(&mut chunks);
            let at = offset;
            // Where the next batch goes follows from this one's bytes, not from the counter
            // that only decides when to write.
            offset += batch.iter().map(|c| c.len() as u64).sum::<u64>();
            pending = 0;
            let f = f.clone();
            writing = Some(tokio::task::spawn_blocking(move || {
                write_all_vectored_at(&f, &batch, at)
            }));
        }
        if let Some(w) = writing.take() {
            w.await
                .expect("write task panicked")
                .map_err(|e| Error::io(file, e))?;
        }
        Ok((n, hasher.map(Hasher::finish)))
    }

    /// DeleteObjects in batches of 1,000; returns keys the server refused to delete.
    pub async fn delete_many(&self, keys: &[String]) -> Result<Vec<String>> {
        let mut failed = Vec::new();
        for batch in keys.chunks(1000) {
            let objects = batch
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::Storage(e.to_string()))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| Error::Storage(e.to_string()))?;
            self.requests.add(RequestKind::Delete, 1);
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| classify(e, "DeleteObjects"))?;
            failed.extend(
                out.errors()
                    .iter()
                    .filter_map(|e| e.key().map(str::to_string)),
            );
        }
        Ok(failed)
    }
}

/// Chunks per vectored write (well under the kernel's IOV_MAX of 1,024).
const MAX_IOV: usize = 256;

/// Writes `chunks` one after another at `offset` of `f`, with as few `pwritev` calls as the kernel
/// allows.
fn write_all_vectored_at(
    f: &std::fs::File,
    chunks: &[Bytes],
    mut offset: u64,
) -> std::io::Result<()> {
    let mut slices: Vec<std::io::IoSlice<'_>> =
        chunks.iter().map(|c| std::io::IoSlice::new(c)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        // At most MAX_IOV slices a call, whatever the caller batched (the kernel refuses more
        // than IOV_MAX).
        let n = rest.len().min(MAX_IOV);
        let written =
            nix::sys::uio::pwritev(f, &rest[..n], offset as i64).map_err(std::io::Error::from)?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        offset += written as u64;
        std::io::IoSlice::advance_slices(&mut rest, written);
    }
    Ok(())
}

/// One part of a multipart upload.
struct Part {
    /// 1-based.
    number: i32,
    /// Where it starts in the file.
    offset: u64,
    /// Its length.
    len: u64,
    /// Its CRC64NVME, with a full-object CRC64NVME upload.
    crc: Option<u64>,
}

fn user_meta(meta: &ObjectMeta) -> HashMap<String, String> {
    meta.user
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

async fn body_of(src: &Source) -> Result<ByteStream> {
    match src {
        Source::Memory(b) => Ok(ByteStream::from(b.clone())),
        Source::File { path, len } => ByteStream::read_from()
            .path(path)
            .buffer_size(IO_BUFFER)
            .length(Length::Exact(*len))
            .build()
            .await
            .map_err(|e| body_error(path, e)),
    }
}

fn body_error(path: &Path, e: aws_smithy_types::byte_stream::error::Error) -> Error {
    if !path.exists() {
        return Error::Vanished(path.to_path_buf());
    }
    Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Maps an SDK error of a request that read `src`: a file that is gone is [`Error::Vanished`].
fn file_error<E>(e: SdkError<E, HttpResponse>, key: &str, src: &Source) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let Source::File { path, .. } = src
        && !path.exists()
    {
        return Error::Vanished(path.clone());
    }
    classify(e, key)
}

/// Sorts an SDK error into what the caller can do about it. Messages carry the server's code and
/// message, never credentials.
pub(crate) fn classify<E>(e: SdkError<E, HttpResponse>, what: &str) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match &e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            let code = err.code().unwrap_or("");
            let msg = err.message().unwrap_or("");
            let status = se.raw().status().as_u16();
            let text = if code.is_empty() && msg.is_empty() {
                format!("{what}: HTTP {status}")
            } else {
                format!("{what}: {code} {msg} (HTTP {status})").replace("  ", " ")
            };
            match (code, status) {
                ("NoSuchBucket" | "NoSuchKey" | "NotFound", _) | (_, 404) => Error::NotFound(text),
                (
                    "AccessDenied"
                    | "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "Forbidden"
                    | "AllAccessDisabled",
                    _,
                )
                | (_, 401 | 403) => Error::Permission(text),
                (
                    "SlowDown"
                    | "InternalError"
                    | "ServiceUnavailable"
                    | "RequestTimeout"
                    | "RequestTimeTooSkewed",
                    _,
                )
                | (_, 408 | 429) => Error::Transient(text),
                (_, s) if s >= 500 => Error::Transient(text),
                ("BadDigest" | "IncompleteBody", _) => Error::Integrity(text),
                _ => Error::Storage(text),
            }
        }
        SdkError::TimeoutError(_) => Error::Transient(format!(
            "{what}: no answer within the request timeout (stalled connection)"
        )),
        SdkError::ConstructionFailure(_) => Error::Storage(format!(
            "{what}: {}",
            aws_smithy_types::error::display::DisplayErrorContext(&e)
        )),
        _ => Error::Transient(format!(
            "{what}: {}",
            aws_smithy_types::error::display::DisplayErrorContext(&e)
        )),
    }
}

/// Settings for a scripted endpoint at `url` in unit tests: single PUTs up to 1 MiB, 1 MiB parts,
/// one part in flight, the SDK's own retries off (one attempt per request).
#[cfg(test)]
pub(crate) fn scripted(url: String) -> (S3Settings, StoreOptions) {
    let settings = S3Settings {
        bucket: "b".into(),
        region: Some("us-east-1".into()),
        endpoint: Some(url),
        force_path_style: true,
        credentials: Some(crate::config::StaticCredentials {
            access_key: "k".into(),
            secret_key: "s".into(),
            session_token: None,
        }),
        max_attempts: 1,
        request_timeout: Some(Duration::from_secs(10)),
    };
    let opts = StoreOptions {
        sizing: UploadSizing {
            max_single_put: 1 << 20,
            part_size: 1 << 20,
        },
        write: Default::default(),
        max_parts_in_flight: 1,
    };
    (settings, opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What a scripted endpoint saw: each request's method and path with its query.
    type Seen = Arc<Mutex<Vec<String>>>;

    /// A scripted S3 endpoint on loopback, one request per connection: multipart uploads are
    /// created (upload id `u1`), completed and aborted; each UploadPart gets the next of
    /// `part_replies` (the last repeating), any other PUT a 200.
    async fn endpoint(part_replies: Vec<u16>) -> (String, Seen) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen: Seen = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            let mut parts = 0;
            loop {
                let (mut c, _) = l.accept().await.unwrap();
                let mut req = Vec::new();
                let mut b = [0u8; 65536];
                let head_end = loop {
                    if let Some(i) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match c.read(&mut b).await {
                        Ok(0) | Err(_) => break req.len(),
                        Ok(n) => req.extend_from_slice(&b[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&req[..head_end]).to_string();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                let mut body = req.len() - head_end;
                while body < length {
                    match c.read(&mut b).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => body += n,
                    }
                }
                let line = head.lines().next().unwrap_or_default();
                let mut words = line.split(' ');
                let (method, target) = (
                    words.next().unwrap_or_default(),
                    words.next().unwrap_or_default(),
                );
                log.lock().unwrap().push(format!("{method} {target}"));
                let (status, xml) = match method {
                    "POST" if target.contains("uploads") => (
                        200,
                        "<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>u1</UploadId></InitiateMultipartUploadResult>",
                    ),
                    "POST" => (
                        200,
                        "<CompleteMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><ETag>\"e\"</ETag></CompleteMultipartUploadResult>",
                    ),
                    "DELETE" => (204, ""),
                    "PUT" if target.contains("partNumber") => {
                        parts += 1;
                        (part_replies[(parts - 1).min(part_replies.len() - 1)], "")
                    }
                    _ => (200, ""),
                };
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nETag: \"e\"\r\nConnection: close\r\n\r\n{xml}",
                    xml.len()
                );
                let _ = c.write_all(reply.as_bytes()).await;
                let _ = c.shutdown().await;
            }
        });
        (format!("http://{addr}"), seen)
    }

    /// A store on that endpoint: single PUTs up to 1 MiB, 1 MiB parts, the SDK's own retries off.
    async fn store(url: String) -> S3Store {
        let (settings, opts) = scripted(url);
        S3Store::new(&settings, opts).await.unwrap()
    }

    /// Puts a file of `len` bytes to a scripted endpoint: the outcome (bounded: an endless retry
    /// fails the test) and the requests it saw.
    async fn put(len: u64, part_replies: Vec<u16>) -> (Result<Written>, Vec<String>) {
        let (url, seen) = endpoint(part_replies).await;
        let s = store(url).await;
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("f");
        std::fs::write(&path, vec![7u8; len as usize]).unwrap();
        let r = tokio::time::timeout(
            Duration::from_secs(30),
            s.put(
                "k",
                Source::File { path, len },
                &ObjectMeta::default(),
                None,
            ),
        )
        .await
        .expect("the put ends: part retries are bounded");
        let seen = seen.lock().unwrap().clone();
        (r, seen)
    }

    fn parts(seen: &[String]) -> Vec<String> {
        seen.iter()
            .filter(|r| r.contains("partNumber"))
            .map(|r| {
                let n = r
                    .split(['?', '&'])
                    .find_map(|q| q.strip_prefix("partNumber="));
                n.unwrap_or_default().to_string()
            })
            .collect()
    }

    /// Issue 13 (mutation testing): a file of exactly the single-PUT limit is one PUT; one byte
    /// more is a multipart upload whose parts are numbered from 1.
    #[tokio::test]
    async fn the_single_put_limit_is_inclusive_and_parts_count_from_one() {
        let (r, seen) = put(1 << 20, vec![200]).await;
        assert!(matches!(r, Ok(Written::Single)), "{r:?} {seen:?}");
        assert_eq!(seen.len(), 1, "{seen:?}");
        let (r, seen) = put((2 << 20) + 1, vec![200]).await;
        assert!(matches!(r, Ok(Written::Multipart(3))), "{r:?} {seen:?}");
        assert_eq!(parts(&seen), ["1", "2", "3"], "{seen:?}");
    }

    /// Issue 13 (mutation testing): a part the server answers with a 503 is sent again (here
    /// twice refused, then taken); one refused for good (403) is not, and the upload is aborted;
    /// one that keeps failing is given up after `PART_ATTEMPTS` and aborted.
    #[tokio::test]
    async fn parts_are_retried_only_when_it_can_help_and_not_for_ever() {
        let (r, seen) = put(1 << 20 | 1, vec![503, 503, 200]).await;
        assert!(matches!(r, Ok(Written::Multipart(2))), "{r:?} {seen:?}");
        assert_eq!(parts(&seen), ["1", "1", "1", "2"], "{seen:?}");

        let (r, seen) = put(1 << 20 | 1, vec![403]).await;
        assert!(r.is_err(), "{seen:?}");
        assert_eq!(parts(&seen), ["1"], "a 403 is not retried: {seen:?}");
        assert!(
            seen.last().unwrap().starts_with("DELETE"),
            "aborted: {seen:?}"
        );

        let (r, seen) = put(1 << 20 | 1, vec![503]).await;
        assert!(r.is_err(), "{seen:?}");
        assert_eq!(parts(&seen).len(), PART_ATTEMPTS as usize, "{seen:?}");
        assert!(
            seen.last().unwrap().starts_with("DELETE"),
            "aborted: {seen:?}"
        );
    }
}
