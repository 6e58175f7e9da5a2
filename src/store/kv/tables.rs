//! The tables of the metadata database: what each holds, and the fixed
//! number each has in redo log records. Engine-neutral: an engine maps
//! each to a table (or key range) of its own by name.

/// The tables of the metadata database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// `"schema"` -> version.
    Meta,
    /// digest -> blob record.
    Blobs,
    /// digest -> manifest header and, for small manifests, the exact bytes
    /// (`records::encode_manifest`; large manifests live in files).
    Manifests,
    /// repo NUL digest -> () : blobs a repository holds.
    RepoBlobs,
    /// repo NUL digest -> push time : manifests a repository holds.
    RepoManifests,
    /// repo NUL tag -> digest and when it last moved (`records::tag_value`).
    Tags,
    /// repo NUL subject NUL referrer -> ().
    Referrers,
    /// session id -> upload record.
    Uploads,
    /// repo -> () : repositories with any content.
    Repos,
    /// digest -> blake3 of each 1 MiB block, checked as the blob is served.
    BlobBlocks,
    /// digest -> why : blobs found corrupt, to be repaired by a re-push.
    Damaged,
    /// digest -> why : manifests kept in files found corrupt (verify on
    /// read, scrub), until a re-push rewrites the file. Added in schema 3
    /// without a version change: a build that lacks it ignores the table,
    /// and refuses a redo log that names it (after a crash) as corrupt.
    DamagedManifests,
    /// robot name -> robot account record (JSON, written by the registry
    /// layer). Added in schema 3 without a version change, as
    /// `DamagedManifests` was.
    Robots,
    /// Schema 1 only (digest -> manifest bytes): emptied and dropped by the
    /// migration to schema 2, which folded it into `Manifests`.
    ManifestBytesV1,
    /// Schema 1 only (repo NUL tag -> unix ms it moved): folded into `Tags`.
    TagTimesV1,
}

impl Table {
    /// The tables of the current schema, created when the file is.
    pub const ALL: [Table; 13] = [
        Table::Meta,
        Table::Blobs,
        Table::Manifests,
        Table::RepoBlobs,
        Table::RepoManifests,
        Table::Tags,
        Table::Referrers,
        Table::Uploads,
        Table::Repos,
        Table::BlobBlocks,
        Table::Damaged,
        Table::DamagedManifests,
        Table::Robots,
    ];

    /// The table's number in redo log records: fixed, never reused.
    pub fn id(self) -> u8 {
        match self {
            Table::Meta => 0,
            Table::Blobs => 1,
            Table::Manifests => 2,
            Table::RepoBlobs => 3,
            Table::RepoManifests => 4,
            Table::Tags => 5,
            Table::Referrers => 6,
            Table::Uploads => 7,
            Table::Repos => 8,
            Table::BlobBlocks => 9,
            Table::Damaged => 10,
            Table::ManifestBytesV1 => 11,
            Table::TagTimesV1 => 12,
            Table::DamagedManifests => 13,
            Table::Robots => 14,
        }
    }

    pub fn from_id(id: u8) -> Option<Table> {
        Table::ALL
            .into_iter()
            .chain([Table::ManifestBytesV1, Table::TagTimesV1])
            .find(|t| t.id() == id)
    }

    /// The table's name in the database.
    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Blobs => "blobs",
            Table::Manifests => "manifests",
            Table::ManifestBytesV1 => "manifest_bytes",
            Table::RepoBlobs => "repo_blobs",
            Table::RepoManifests => "repo_manifests",
            Table::Tags => "tags",
            Table::Referrers => "referrers",
            Table::Uploads => "uploads",
            Table::Repos => "repos",
            Table::BlobBlocks => "blob_blocks",
            Table::Damaged => "damaged",
            Table::DamagedManifests => "damaged_manifests",
            Table::Robots => "robots",
            Table::TagTimesV1 => "tag_times",
        }
    }
}
