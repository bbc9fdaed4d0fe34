// The original's Go stack (net/http + gorilla/websocket + go-sqlite3) built the way an expert
// would build it, to measure fastchat against in the same invocation: issue 14's "expert Go
// build" (frames built once, one writev per socket, group commit). It speaks the subset of
// the protocol the load generators use, like bench/baseline_server.py:
//
//	JOIN_ROOM    -> ROOM_JOINED {room, user, members}
//	CHAT_MESSAGE -> stored (the committer's next transaction), then CHAT_MESSAGE {id, room,
//	                user, message, timestamp} to every member of the room, the sender
//	                included, after the COMMIT
//	JOIN_POST    -> POST_JOINED {post_id, viewers}
//	POST_COMMENT -> the same through `comments`, POST_COMMENT {id, post_id, ...} to viewers
//
// What makes it the expert build, not the naive one:
//   - group commit: one committer goroutine takes every write queued since its last
//     transaction and commits them in one (a prepared INSERT per row, WAL,
//     synchronous=NORMAL), then hands them out;
//   - a frame is built once per message (JSON appended by hand, the WebSocket header in
//     front) and the same bytes are queued to every member;
//   - each connection has a writer goroutine that sends everything queued for it since its
//     last write in one writev (net.Buffers), bypassing gorilla's one-frame-per-write path.
//
// Schema: the original's tables and indexes ("indexed database queries"): messages(room, id)
// and comments(post_id, id), as a history page needs.
//
// Build (Debian packages golang-go, golang-github-gorilla-websocket-dev and
// golang-github-mattn-go-sqlite3-dev; no network):
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o build/goexpert ./bench/goexpert
//
// Run: build/goexpert -port 9001 -db /tmp/x.db   (prints a line with "ready" once listening;
// stops on SIGTERM or SIGINT)
package main

import (
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/gorilla/websocket"
	_ "github.com/mattn/go-sqlite3"
)

const schema = `
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY, room TEXT NOT NULL, user TEXT NOT NULL,
    message TEXT NOT NULL, ts TEXT NOT NULL, client_id TEXT
);
CREATE TABLE IF NOT EXISTS comments (
    id INTEGER PRIMARY KEY, post_id INTEGER NOT NULL, user TEXT NOT NULL,
    comment TEXT NOT NULL, ts TEXT NOT NULL, client_id TEXT
);
`

const indexes = `
CREATE INDEX IF NOT EXISTS messages_room_id ON messages(room, id);
CREATE INDEX IF NOT EXISTS comments_post_id ON comments(post_id, id);
`

// client: one WebSocket connection. Frames queued for it go out in one writev: written
// directly by whoever queued them (the committer, once per batch) while the socket takes
// them, or by its writer goroutine, which waits for the socket once it is backed up.
type client struct {
	raw     net.Conn
	rc      syscall.RawConn
	mu      sync.Mutex
	out     [][]byte // frames queued since the last write
	queued  bool     // out is non-empty and its flush is due
	writing bool     // the writer goroutine owns the socket (it was backed up)
	wake    chan struct{}
	closed  bool
	joined  map[string]bool
	scratch event
	iov     []syscall.Iovec
}

// enqueue: true if this frame makes a flush due (the caller flushes once it queued all).
func (c *client) enqueue(frame []byte) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.out = append(c.out, frame)
	first := !c.queued
	c.queued = true
	c.mu.Unlock()
	return first
}

func (c *client) send(frame []byte) {
	if c.enqueue(frame) {
		c.flush()
	}
}

// flush: everything queued, in one writev if the socket takes it now; what it does not
// take goes to the writer goroutine.
func (c *client) flush() {
	c.mu.Lock()
	if c.writing || c.closed {
		c.mu.Unlock()
		return // the writer goroutine takes it with what it has
	}
	pending := c.out
	c.out = nil
	c.queued = false
	c.mu.Unlock()
	rest := c.writev(pending)
	if len(rest) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.out = append(rest, c.out...)
	c.queued = true
	c.writing = true
	select { // under the lock: leave closes wake under it too
	case c.wake <- struct{}{}:
	default:
	}
}

// writev: one non-blocking writev of frames; what it did not write (nil if all).
func (c *client) writev(frames [][]byte) [][]byte {
	c.iov = c.iov[:0]
	for _, f := range frames {
		c.iov = append(c.iov, syscall.Iovec{Base: &f[0], Len: uint64(len(f))})
	}
	var n int
	var errno syscall.Errno
	c.rc.Write(func(fd uintptr) bool {
		r, _, e := syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&c.iov[0])), uintptr(len(c.iov)))
		n, errno = int(r), e
		return true // never wait here
	})
	if errno != 0 {
		if errno != syscall.EAGAIN {
			c.raw.Close()
			return nil
		}
		n = 0
	}
	for len(frames) > 0 && n >= len(frames[0]) {
		n -= len(frames[0])
		frames = frames[1:]
	}
	if len(frames) > 0 && n > 0 {
		frames = append([][]byte{frames[0][n:]}, frames[1:]...)
	}
	return frames
}

// writer: the socket was backed up; write (blocking) until everything queued is out, then
// hand writing back to flush.
func (c *client) writer() {
	var bufs net.Buffers
	for range c.wake {
		for {
			c.mu.Lock()
			pending := c.out
			c.out = nil
			c.queued = false
			if len(pending) == 0 {
				c.writing = false
				c.mu.Unlock()
				break
			}
			c.mu.Unlock()
			bufs = append(bufs[:0], pending...)
			if _, err := bufs.WriteTo(c.raw); err != nil {
				c.raw.Close()
				return
			}
		}
	}
}

type event struct {
	Type     string          `json:"type"`
	Room     string          `json:"room"`
	User     string          `json:"user"`
	Message  string          `json:"message"`
	Comment  string          `json:"comment"`
	PostID   json.RawMessage `json:"post_id"`
	ClientID *string         `json:"client_id"`
}

// write: one message or comment waiting for the committer.
type write struct {
	comment  bool
	scope    string // the room, or the post id
	post     int64
	user     string
	text     string
	clientID *string
}

type server struct {
	db       *sql.DB
	insMsg   *sql.Stmt
	insCom   *sql.Stmt
	mu       sync.Mutex
	rooms    map[string]map[*client]bool
	in       chan write
	batch    []write
	frames   [][]byte
	touched  []*client
	upgrader websocket.Upgrader
	commits  int
	rows     int
}

// join: c joins the room (or post) `key`; its members (viewers) now.
func (s *server) join(c *client, key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.rooms[key]
	if m == nil {
		m = make(map[*client]bool)
		s.rooms[key] = m
	}
	m[c] = true
	c.joined[key] = true
	return len(m)
}

func (s *server) handle(w http.ResponseWriter, r *http.Request) {
	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	conn.SetReadLimit(1 << 20)
	c := &client{raw: conn.UnderlyingConn(), wake: make(chan struct{}, 1), joined: map[string]bool{}}
	if c.rc, err = c.raw.(*net.TCPConn).SyscallConn(); err != nil {
		return
	}
	// Control frames go through the same queue: gorilla's own handlers would write to the
	// socket beside the writer goroutine.
	conn.SetPingHandler(func(data string) error {
		c.send(frame(websocket.PongMessage, []byte(data)))
		return nil
	})
	conn.SetCloseHandler(func(code int, text string) error {
		c.send(frame(websocket.CloseMessage, websocket.FormatCloseMessage(code, "")))
		return nil
	})
	go c.writer()
	defer s.leave(c)
	for {
		kind, data, err := conn.ReadMessage()
		if err != nil {
			return
		}
		if kind != websocket.TextMessage {
			continue
		}
		s.receive(c, data)
	}
}

func (s *server) leave(c *client) {
	s.mu.Lock()
	for key := range c.joined {
		if m := s.rooms[key]; m != nil {
			delete(m, c)
			if len(m) == 0 {
				delete(s.rooms, key)
			}
		}
	}
	s.mu.Unlock()
	c.mu.Lock()
	c.closed = true
	close(c.wake)
	c.mu.Unlock()
	c.raw.Close()
}

func (s *server) fail(c *client, code, message string) {
	b := []byte(`{"type":"ERROR","code":`)
	b = appendString(b, code)
	b = append(b, `,"message":`...)
	b = appendString(b, message)
	b = append(b, '}')
	c.send(frame(websocket.TextMessage, b))
}

func (s *server) receive(c *client, data []byte) {
	ev := &c.scratch
	*ev = event{}
	if err := json.Unmarshal(data, ev); err != nil || ev.Type == "" {
		s.fail(c, "invalid_json", "expected a JSON object with a type")
		return
	}
	user := ev.User
	if user == "" {
		user = "anonymous"
	}
	switch ev.Type {
	case "JOIN_ROOM":
		n := s.join(c, ev.Room)
		b := []byte(`{"type":"ROOM_JOINED","room":`)
		b = appendString(b, ev.Room)
		b = append(b, `,"user":`...)
		b = appendString(b, user)
		b = append(b, `,"members":`...)
		b = strconv.AppendInt(b, int64(n), 10)
		b = append(b, '}')
		c.send(frame(websocket.TextMessage, b))
	case "CHAT_MESSAGE":
		if !c.joined[ev.Room] {
			s.fail(c, "not_joined", "join room "+ev.Room+" first")
			return
		}
		s.in <- write{scope: ev.Room, user: user, text: ev.Message, clientID: ev.ClientID}
	case "JOIN_POST":
		post := postID(ev.PostID)
		key := "post:" + post
		n := s.join(c, key)
		b := []byte(`{"type":"POST_JOINED","post_id":`)
		b = appendString(b, post)
		b = append(b, `,"viewers":`...)
		b = strconv.AppendInt(b, int64(n), 10)
		b = append(b, '}')
		c.send(frame(websocket.TextMessage, b))
	case "POST_COMMENT":
		post := postID(ev.PostID)
		if !c.joined["post:"+post] {
			s.fail(c, "not_joined", "join post "+post+" first")
			return
		}
		id, err := strconv.ParseInt(post, 10, 64)
		if err != nil {
			s.fail(c, "invalid_post", "post_id must be a number")
			return
		}
		s.in <- write{comment: true, scope: "post:" + post, post: id, user: user, text: ev.Comment, clientID: ev.ClientID}
	default:
		s.fail(c, "unknown_type", "unknown type "+ev.Type)
	}
}

func postID(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

// committer: group commit. Everything queued since the last transaction goes into the next,
// then each committed row's frame (built once) is queued to its room's members, and every
// member touched is woken once.
func (s *server) committer() {
	for first := range s.in {
		s.batch = append(s.batch[:0], first)
		// Let the readers that are ready run first (on one core they wait behind this
		// goroutine), then take all they queued: without the yield each commit held one row.
		for len(s.batch) < 4096 {
			runtime.Gosched()
			n := len(s.batch)
		drain:
			for len(s.batch) < 4096 {
				select {
				case w := <-s.in:
					s.batch = append(s.batch, w)
				default:
					break drain
				}
			}
			if len(s.batch) == n {
				break
			}
		}
		ids, ts, err := s.commit(s.batch)
		if err != nil {
			fmt.Fprintln(os.Stderr, "commit failed:", err)
			os.Exit(1)
		}
		s.deliver(s.batch, ids, ts)
		s.commits++
		s.rows += len(s.batch)
	}
}

func (s *server) commit(batch []write) ([]int64, string, error) {
	ts := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	tx, err := s.db.Begin()
	if err != nil {
		return nil, "", err
	}
	msg, com := tx.Stmt(s.insMsg), tx.Stmt(s.insCom)
	ids := make([]int64, len(batch))
	for i, w := range batch {
		var res sql.Result
		if w.comment {
			res, err = com.Exec(w.post, w.user, w.text, ts, w.clientID)
		} else {
			res, err = msg.Exec(w.scope, w.user, w.text, ts, w.clientID)
		}
		if err != nil {
			tx.Rollback()
			return nil, "", err
		}
		ids[i], _ = res.LastInsertId()
	}
	return ids, ts, tx.Commit()
}

func (s *server) deliver(batch []write, ids []int64, ts string) {
	s.touched = s.touched[:0]
	s.mu.Lock()
	for i, w := range batch {
		var b []byte
		if w.comment {
			b = []byte(`{"type":"POST_COMMENT","id":`)
			b = strconv.AppendInt(b, ids[i], 10)
			b = append(b, `,"post_id":`...)
			b = strconv.AppendInt(b, w.post, 10)
			b = append(b, `,"user":`...)
			b = appendString(b, w.user)
			b = append(b, `,"comment":`...)
			b = appendString(b, w.text)
		} else {
			b = []byte(`{"type":"CHAT_MESSAGE","id":`)
			b = strconv.AppendInt(b, ids[i], 10)
			b = append(b, `,"room":`...)
			b = appendString(b, w.scope)
			b = append(b, `,"user":`...)
			b = appendString(b, w.user)
			b = append(b, `,"message":`...)
			b = appendString(b, w.text)
		}
		b = append(b, `,"timestamp":"`...)
		b = append(b, ts...)
		b = append(b, `"}`...)
		f := frame(websocket.TextMessage, b) // once, for every member
		for c := range s.rooms[w.scope] {
			if c.enqueue(f) {
				s.touched = append(s.touched, c)
			}
		}
	}
	s.mu.Unlock()
	for _, c := range s.touched {
		c.flush()
	}
}

// frame: an unmasked server frame (FIN set) around payload.
func frame(opcode int, payload []byte) []byte {
	n := len(payload)
	var b []byte
	switch {
	case n < 126:
		b = make([]byte, 2, 2+n)
		b[1] = byte(n)
	case n < 1<<16:
		b = make([]byte, 4, 4+n)
		b[1] = 126
		b[2], b[3] = byte(n>>8), byte(n)
	default:
		b = make([]byte, 10, 10+n)
		b[1] = 127
		for i := 0; i < 8; i++ {
			b[9-i] = byte(n >> (8 * i))
		}
	}
	b[0] = 0x80 | byte(opcode)
	return append(b, payload...)
}

// appendString: s as a JSON string.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func main() {
	port := flag.Int("port", 9001, "TCP port")
	host := flag.String("host", "127.0.0.1", "address")
	dbPath := flag.String("db", "", "SQLite file (created if missing)")
	indexed := flag.Bool("index", true, "the history indexes messages(room, id) and comments(post_id, id)")
	flag.Parse()
	if *dbPath == "" {
		fmt.Fprintln(os.Stderr, "-db is required")
		os.Exit(2)
	}
	db, err := sql.Open("sqlite3", *dbPath+"?_journal_mode=WAL&_synchronous=NORMAL")
	if err != nil {
		panic(err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schema); err != nil {
		panic(err)
	}
	if *indexed {
		if _, err := db.Exec(indexes); err != nil {
			panic(err)
		}
	}
	s := &server{db: db, rooms: map[string]map[*client]bool{}, in: make(chan write, 65536)}
	s.upgrader.CheckOrigin = func(*http.Request) bool { return true }
	if s.insMsg, err = db.Prepare("INSERT INTO messages(room, user, message, ts, client_id) VALUES (?, ?, ?, ?, ?)"); err != nil {
		panic(err)
	}
	if s.insCom, err = db.Prepare("INSERT INTO comments(post_id, user, comment, ts, client_id) VALUES (?, ?, ?, ?, ?)"); err != nil {
		panic(err)
	}
	go s.committer()
	ln, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", s.handle)
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	fmt.Printf("goexpert ready: ws://%s/ws db=%s\n", ln.Addr(), *dbPath)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	fmt.Fprintf(os.Stderr, "commits %d rows %d\n", s.commits, s.rows)
	ln.Close()
	db.Close()
}
