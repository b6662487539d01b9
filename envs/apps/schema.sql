-- The relational state of the apps world. One in-memory SQLite database per episode.
-- Every table has an integer primary key `id`; the evaluator diffs rows by (table, id).

-- The directory of everyone with an account (the user is id 1).
CREATE TABLE people (
    id INTEGER PRIMARY KEY,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    phone_number TEXT NOT NULL UNIQUE,
    birthday TEXT NOT NULL
);

-- phone
CREATE TABLE contacts (
    id INTEGER PRIMARY KEY,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    phone_number TEXT NOT NULL,
    email TEXT,
    relationship TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE text_messages (
    id INTEGER PRIMARY KEY,
    sender_phone TEXT NOT NULL,
    receiver_phone TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at TEXT NOT NULL
);
CREATE TABLE alarms (
    id INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    label TEXT NOT NULL,
    enabled INTEGER NOT NULL
);

-- email
CREATE TABLE emails (
    id INTEGER PRIMARY KEY,
    sender TEXT NOT NULL,
    recipients TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    reply_to_id INTEGER
);

-- calendar
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    start TEXT NOT NULL,
    end TEXT NOT NULL,
    location TEXT NOT NULL,
    attendees TEXT NOT NULL,
    description TEXT NOT NULL
);

-- notes (notes and todos)
CREATE TABLE notes (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    content TEXT NOT NULL,
    tags TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE todos (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    due_date TEXT,
    done INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    completed_at TEXT
);

-- payments
CREATE TABLE payment_accounts (
    id INTEGER PRIMARY KEY,            -- = people.id
    balance REAL NOT NULL
);
CREATE TABLE payment_cards (
    id INTEGER PRIMARY KEY,
    owner_id INTEGER NOT NULL,
    card_name TEXT NOT NULL,
    last_four TEXT NOT NULL,
    expiry TEXT NOT NULL
);
CREATE TABLE transactions (
    id INTEGER PRIMARY KEY,
    sender_id INTEGER NOT NULL,
    receiver_id INTEGER NOT NULL,
    amount REAL NOT NULL,
    description TEXT NOT NULL,
    payment_card_id INTEGER,
    created_at TEXT NOT NULL
);
CREATE TABLE payment_requests (
    id INTEGER PRIMARY KEY,
    requester_id INTEGER NOT NULL,
    payer_id INTEGER NOT NULL,
    amount REAL NOT NULL,
    description TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    resolved_at TEXT
);

-- music
CREATE TABLE songs (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    artist TEXT NOT NULL,
    album TEXT NOT NULL,
    genre TEXT NOT NULL,
    duration_s INTEGER NOT NULL,
    plays INTEGER NOT NULL,
    release_year INTEGER NOT NULL
);
CREATE TABLE playlists (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    is_public INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE playlist_songs (
    id INTEGER PRIMARY KEY,
    playlist_id INTEGER NOT NULL,
    song_id INTEGER NOT NULL,
    added_at TEXT NOT NULL
);
CREATE TABLE liked_songs (
    id INTEGER PRIMARY KEY,
    song_id INTEGER NOT NULL UNIQUE,
    liked_at TEXT NOT NULL
);
