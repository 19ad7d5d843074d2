// Browser side of moshi's chat protocol (moshi/server.py): one websocket, binary messages whose
// first byte is the kind. 0x00 handshake (server ready), 0x01 Ogg/Opus audio (both ways),
// 0x02 text piece, 0x04 JSON stats (studio), 0x05 error message; other kinds are ignored.
// Mic -> WebCodecs AudioEncoder (Opus, 20 ms packets) -> Ogg pages written here -> server;
// server Ogg pages -> parsed here -> AudioDecoder -> one AudioContext with a small jitter buffer.
// Loaded by a <script> tag or as a gr.HTML js_on_load body: it only defines window.MoshiChat.
window.MoshiChat = window.MoshiChat || (() => {
  "use strict";

  const KIND = { handshake: 0, audio: 1, text: 2, meta: 4, error: 5 };
  const OPUS_RATE = 48000; // Ogg Opus granule positions always count 48 kHz samples (RFC 7845)
  const PRE_SKIP = 312; // libopus encoder lookahead at 48 kHz, used if the encoder gives no OpusHead
  const MIC_CHUNK = 480; // fallback capture path: post 10 ms at 48 kHz per message, not 128 frames

  // Ogg's CRC32: polynomial 0x04c11db7, not reflected, initial value 0, no final xor.
  const CRC_TABLE = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let r = i << 24;
    for (let k = 0; k < 8; k++) r = r & 0x80000000 ? (r << 1) ^ 0x04c11db7 : r << 1;
    CRC_TABLE[i] = r >>> 0;
  }
  function oggCrc(bytes) {
    let crc = 0;
    for (let i = 0; i < bytes.length; i++) crc = ((crc << 8) ^ CRC_TABLE[((crc >>> 24) ^ bytes[i]) & 0xff]) >>> 0;
    return crc;
  }

  const ascii = (s) => Uint8Array.from(s, (c) => c.charCodeAt(0));
  const startsWith = (bytes, magic) => bytes.length >= magic.length && magic.every((b, i) => bytes[i] === b);
  const OPUS_HEAD = ascii("OpusHead");
  const OPUS_TAGS = ascii("OpusTags");
  const OGG_MAGIC = ascii("OggS");

  // Writes one logical Ogg stream, one packet per page (each packet is sent as soon as it exists).
  class OggWriter {
    constructor() {
      this.serial = (Math.random() * 0x100000000) >>> 0;
      this.sequence = 0;
    }

    page(packet, granule, flags) {
      const lacing = [];
      for (let left = packet.length; ; left -= 255) {
        lacing.push(Math.min(left, 255));
        if (left < 255) break; // a packet that fills whole segments ends with a 0 lacing value
      }
      const out = new Uint8Array(27 + lacing.length + packet.length);
      const view = new DataView(out.buffer);
      out.set(OGG_MAGIC, 0);
      out[5] = flags; // version (out[4]) is 0
      view.setBigUint64(6, BigInt(granule), true);
      view.setUint32(14, this.serial, true);
      view.setUint32(18, this.sequence++, true);
      out[26] = lacing.length;
      out.set(lacing, 27);
      out.set(packet, 27 + lacing.length);
      view.setUint32(22, oggCrc(out), true); // computed with its own field still 0
      return out;
    }

    // The two header pages: OpusHead (beginning of stream) then OpusTags, both at granule 0.
    headers(opusHead) {
      const vendor = ascii("moshi-studio chat_client.js");
      const tags = new Uint8Array(8 + 4 + vendor.length + 4);
      tags.set(OPUS_TAGS, 0);
      new DataView(tags.buffer).setUint32(8, vendor.length, true);
      tags.set(vendor, 12); // the user comment count that follows stays 0
      return [this.page(opusHead, 0, 0x02), this.page(tags, 0, 0)];
    }
  }

  function defaultOpusHead(inputRate) {
    const head = new Uint8Array(19);
    const view = new DataView(head.buffer);
    head.set(OPUS_HEAD, 0);
    head[8] = 1; // version
    head[9] = 1; // channels
    view.setUint16(10, PRE_SKIP, true);
    view.setUint32(12, inputRate, true); // output gain (16) and mapping family (18) stay 0
    return head;
  }

  // Splits a byte stream into Ogg pages (they may straddle or share websocket messages) and
  // pages into packets (a packet may continue on the next page).
  class OggReader {
    constructor(onPacket, onCorrupt) {
      this.buffer = new Uint8Array(0);
      this.packet = [];
      this.onPacket = onPacket;
      this.onCorrupt = onCorrupt;
    }

    push(bytes) {
      const joined = new Uint8Array(this.buffer.length + bytes.length);
      joined.set(this.buffer, 0);
      joined.set(bytes, this.buffer.length);
      let pos = 0;
      while (joined.length - pos >= 27) {
        if (!startsWith(joined.subarray(pos, pos + 4), OGG_MAGIC)) {
          const next = joined.indexOf(0x4f, pos + 1); // resynchronise on the next "O"
          pos = next < 0 ? joined.length : next;
          continue;
        }
        const segments = joined[pos + 26];
        if (joined.length - pos < 27 + segments) break;
        const lacing = joined.subarray(pos + 27, pos + 27 + segments);
        const size = 27 + segments + lacing.reduce((a, b) => a + b, 0);
        if (joined.length - pos < size) break;
        this.page(joined.slice(pos, pos + size), lacing);
        pos += size;
      }
      this.buffer = joined.slice(pos);
    }

    page(page, lacing) {
      const view = new DataView(page.buffer);
      const crc = view.getUint32(22, true);
      view.setUint32(22, 0, true);
      if (oggCrc(page) !== crc) {
        this.packet = [];
        this.onCorrupt(view.getUint32(18, true));
        return;
      }
      if (!(page[5] & 0x01)) this.packet = []; // not a continuation: drop any unfinished packet
      const granule = Number(view.getBigInt64(6, true));
      let at = 27 + lacing.length;
      for (const length of lacing) {
        this.packet.push(page.subarray(at, at + length));
        at += length;
        if (length < 255) {
          const parts = this.packet;
          this.packet = [];
          const packet = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
          parts.reduce((offset, p) => (packet.set(p, offset), offset + p.length), 0);
          this.onPacket(packet, granule);
        }
      }
    }
  }

  // Fallback mic tap for browsers without MediaStreamTrackProcessor: posts mono Float32 chunks.
  const TAP_WORKLET = `
    class MoshiMicTap extends AudioWorkletProcessor {
      constructor() { super(); this.chunk = new Float32Array(${MIC_CHUNK}); this.n = 0; }
      process(inputs) {
        const samples = inputs[0][0];
        for (let i = 0; samples && i < samples.length; i++) {
          this.chunk[this.n++] = samples[i];
          if (this.n === this.chunk.length) {
            this.port.postMessage(this.chunk, [this.chunk.buffer]);
            this.chunk = new Float32Array(${MIC_CHUNK});
            this.n = 0;
          }
        }
        return true;
      }
    }
    registerProcessor("moshi-mic-tap", MoshiMicTap);`;

  const DEFAULT_CONSTRAINTS = {
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
  };

  class MoshiChat {
    constructor({ url, onText, onMeta, onState, onError, jitterMs = 120, maxBufferMs = 600 } = {}) {
      this.url = url;
      this.callbacks = { onText, onMeta, onState, onError };
      this.jitter = jitterMs / 1000;
      this.maxBuffer = Math.max(maxBufferMs, jitterMs + 100) / 1000;
      this.state = "idle";
      this.counters = { sentSeconds: 0, receivedSeconds: 0, droppedSeconds: 0, textPieces: 0, underruns: 0 };
      this.nextPlay = null; // AudioContext time where the next decoded buffer starts
    }

    // Resolves true once the server's handshake arrived and the mic streams, false on failure
    // (reported through onError) or when stop() comes first. Never rejects.
    async start(constraints = DEFAULT_CONSTRAINTS) {
      if (this.state !== "idle") {
        this.report(`start() called twice (state ${this.state}): make a new MoshiChat per conversation`);
        return false;
      }
      const ready = new Promise((resolve) => { this.settle = resolve; });
      this.setState("connecting");
      try {
        if (typeof AudioEncoder !== "function" || typeof AudioDecoder !== "function") {
          throw new Error("this browser has no WebCodecs AudioEncoder/AudioDecoder " +
                          "(needs Chrome/Chromium 94+ or Firefox 130+, on localhost or https)");
        }
        // Created before the first await, while the click that called start() still counts as a gesture.
        this.context = new AudioContext({ latencyHint: "interactive" });
        if (!navigator.mediaDevices) throw new Error("no microphone API here (the page must be on localhost or https)");
        this.stream = await navigator.mediaDevices.getUserMedia(constraints);
        if (this.state === "closed") this.teardown(); // stopped while the permission prompt was open
        if (this.state !== "connecting") return ready;
        // Not awaited: without a user gesture Chromium keeps this pending until one comes.
        this.context.resume().catch(() => {});
        this.decoder = this.makeDecoder();
        await this.connect();
      } catch (e) {
        this.fail(`cannot start the chat: ${e && e.message ? e.message : e}`);
      }
      return ready;
    }

    stop() {
      if (this.state === "closed") return;
      this.teardown();
      this.setState("closed");
    }

    stats() {
      const buffered = this.context && this.nextPlay !== null ? this.nextPlay - this.context.currentTime : 0;
      return { ...this.counters, bufferedMs: Math.max(0, buffered) * 1000, state: this.state };
    }

    // ---- websocket ---------------------------------------------------------------------------

    connect() {
      return new Promise((resolve, reject) => {
        const ws = new WebSocket(this.url);
        ws.binaryType = "arraybuffer";
        this.ws = ws;
        let opened = false;
        ws.onopen = () => {
          opened = true;
          this.setState("waiting");
          resolve();
        };
        ws.onmessage = (event) => this.guard(() => this.receive(event.data));
        ws.onclose = (event) => {
          const why = event.reason ? `: ${event.reason}` : "";
          // Also when stop() came first: start() must not wait forever on this promise.
          if (!opened) reject(new Error(`cannot connect to ${this.url} (code ${event.code}${why})`));
          else this.fail(`connection closed by the server (code ${event.code}${why})`);
        };
      });
    }

    receive(data) {
      // moshi sends binary only; late messages after stop() are dropped
      if (this.state === "closed" || !(data instanceof ArrayBuffer) || data.byteLength === 0) return;
      const bytes = new Uint8Array(data);
      const payload = bytes.subarray(1);
      switch (bytes[0]) {
        case KIND.handshake:
          if (this.state === "waiting") this.goLive();
          break;
        case KIND.audio:
          this.oggIn.push(payload);
          break;
        case KIND.text:
          this.counters.textPieces += 1;
          this.call("onText", new TextDecoder().decode(payload));
          break;
        case KIND.meta: {
          let meta;
          try {
            meta = JSON.parse(new TextDecoder().decode(payload));
          } catch (e) {
            this.report(`unreadable stats message from the server: ${e.message}`);
            break;
          }
          this.call("onMeta", meta);
          break;
        }
        case KIND.error:
          this.report(`server: ${new TextDecoder().decode(payload)}`);
          break;
        default: // control/ping kinds of other moshi servers: nothing to do
      }
    }

    send(page) {
      if (this.ws.readyState !== WebSocket.OPEN) return;
      const message = new Uint8Array(1 + page.length);
      message[0] = KIND.audio;
      message.set(page, 1);
      this.ws.send(message);
    }

    async goLive() {
      this.setState("live");
      this.settle(true);
      this.settle = null;
      try {
        this.encoder = this.makeEncoder();
        const track = this.stream.getAudioTracks()[0];
        if (!track) throw new Error("the media stream has no audio track");
        if (typeof MediaStreamTrackProcessor === "function") await this.pumpTrack(track);
        else await this.tapWorklet();
      } catch (e) {
        if (this.state === "live") this.fail(`microphone: ${e && e.message ? e.message : e}`);
      }
    }

    // ---- microphone -> Opus -> Ogg ---------------------------------------------------------------

    makeEncoder() {
      const ogg = new OggWriter();
      let granule = 0;
      return new AudioEncoder({
        output: (chunk, meta) => this.guard(() => {
          if (granule === 0) {
            const description = meta && meta.decoderConfig && meta.decoderConfig.description;
            const head = description ? new Uint8Array(description) : defaultOpusHead(this.micRate);
            ogg.headers(head).forEach((page) => this.send(page));
          }
          const packet = new Uint8Array(chunk.byteLength);
          chunk.copyTo(packet);
          const seconds = (chunk.duration || 20000) / 1e6; // we asked for 20 ms packets
          granule += Math.round(seconds * OPUS_RATE);
          this.send(ogg.page(packet, granule, 0));
          this.counters.sentSeconds += seconds;
        }),
        error: (e) => this.fail(`audio encoder: ${e.message}`),
      });
    }

    encode(audio) {
      if (this.encoder.state === "unconfigured") {
        this.micRate = audio.sampleRate;
        this.encoder.configure({ codec: "opus", sampleRate: audio.sampleRate, numberOfChannels: 1,
                                 bitrate: 32000, opus: { frameDuration: 20000 } });
      }
      if (this.encoder.state === "configured") this.encoder.encode(audio);
      audio.close();
    }

    async pumpTrack(track) {
      this.reader = new MediaStreamTrackProcessor({ track }).readable.getReader();
      for (;;) {
        const { value, done } = await this.reader.read();
        if (done) break;
        if (this.state !== "live") {
          value.close();
          break;
        }
        this.encode(value.numberOfChannels === 1 ? value : this.firstChannel(value));
      }
      if (this.state === "live") throw new Error("the microphone stopped (device unplugged or blocked?)");
    }

    // Some devices ignore channelCount: 1; Moshi hears the first channel.
    firstChannel(audio) {
      const samples = new Float32Array(audio.numberOfFrames);
      audio.copyTo(samples, { planeIndex: 0, format: "f32-planar" });
      const mono = new AudioData({ format: "f32-planar", sampleRate: audio.sampleRate, numberOfChannels: 1,
                                   numberOfFrames: audio.numberOfFrames, timestamp: audio.timestamp, data: samples });
      audio.close();
      return mono;
    }

    async tapWorklet() {
      const url = URL.createObjectURL(new Blob([TAP_WORKLET], { type: "text/javascript" }));
      try {
        await this.context.audioWorklet.addModule(url);
      } finally {
        URL.revokeObjectURL(url);
      }
      if (this.state !== "live") return;
      const source = this.context.createMediaStreamSource(this.stream);
      this.tap = new AudioWorkletNode(this.context, "moshi-mic-tap", { numberOfOutputs: 0 });
      let frames = 0;
      this.tap.port.onmessage = ({ data }) => this.guard(() => {
        const timestamp = Math.round((frames / this.context.sampleRate) * 1e6);
        frames += data.length;
        this.encode(new AudioData({ format: "f32-planar", sampleRate: this.context.sampleRate, numberOfChannels: 1,
                                    numberOfFrames: data.length, timestamp, data }));
      });
      source.connect(this.tap);
    }

    // ---- server Ogg -> Opus -> speakers -----------------------------------------------------------

    makeDecoder() {
      const decoder = new AudioDecoder({
        output: (audio) => this.guard(() => this.play(audio)),
        error: (e) => this.fail(`audio decoder: ${e.message}`),
      });
      decoder.configure({ codec: "opus", sampleRate: OPUS_RATE, numberOfChannels: 1 });
      this.oggIn = new OggReader(
        (packet, granule) => {
          if (startsWith(packet, OPUS_HEAD) || startsWith(packet, OPUS_TAGS)) return;
          if (decoder.state !== "configured") return;
          // Timestamps only label chunks here: the page's end position is close enough.
          const timestamp = Math.round((granule / OPUS_RATE) * 1e6);
          decoder.decode(new EncodedAudioChunk({ type: "key", timestamp, data: packet }));
        },
        (sequence) => this.report(`corrupt Ogg page ${sequence} from the server (bad CRC), skipped`),
      );
      return decoder;
    }

    play(audio) {
      try {
        if (this.state === "closed") return;
        const samples = new Float32Array(audio.numberOfFrames);
        audio.copyTo(samples, { planeIndex: 0, format: "f32-planar" });
        const buffer = this.context.createBuffer(1, samples.length, audio.sampleRate);
        buffer.copyToChannel(samples, 0);
        const now = this.context.currentTime;
        if (this.nextPlay === null || this.nextPlay < now) {
          // First buffer, or playback caught up with the network: restart `jitterMs` ahead.
          if (this.nextPlay !== null) this.counters.underruns += 1;
          this.nextPlay = now + this.jitter;
        }
        if (this.nextPlay - now > this.maxBuffer) {
          // A network burst queued more than maxBufferMs: drop, so the conversation's delay stays small.
          this.counters.droppedSeconds += buffer.duration;
          return;
        }
        const node = this.context.createBufferSource();
        node.buffer = buffer;
        node.connect(this.context.destination);
        node.start(this.nextPlay);
        this.nextPlay += buffer.duration;
        this.counters.receivedSeconds += buffer.duration;
      } finally {
        audio.close();
      }
    }

    // ---- state, errors, cleanup -----------------------------------------------------------------

    setState(state) {
      this.state = state;
      this.call("onState", state);
    }

    // Something broke: say so, release everything, end in "closed".
    fail(message) {
      if (this.state === "closed") return;
      this.report(message);
      this.stop();
    }

    report(message) {
      if (!this.call("onError", message)) console.error(`MoshiChat: ${message}`);
    }

    call(name, value) {
      const fn = this.callbacks[name];
      if (typeof fn !== "function") return false;
      try {
        fn(value);
      } catch (e) {
        console.error(`MoshiChat: ${name} callback threw`, e);
      }
      return true;
    }

    guard(fn) {
      try {
        fn();
      } catch (e) {
        this.fail(`unexpected error: ${e && e.message ? e.message : e}`);
      }
    }

    teardown() {
      // Each release may fail on a half-built object; none may stop the others.
      const quietly = (fn) => { try { fn(); } catch (e) { /* already released */ } };
      if (this.settle) this.settle(false);
      this.settle = null;
      quietly(() => this.ws && this.ws.close(1000, "client stopped"));
      quietly(() => this.reader && this.reader.cancel().catch(() => {}));
      quietly(() => this.tap && this.tap.disconnect());
      quietly(() => this.stream && this.stream.getTracks().forEach((t) => t.stop()));
      quietly(() => this.encoder && this.encoder.state !== "closed" && this.encoder.close());
      quietly(() => this.decoder && this.decoder.state !== "closed" && this.decoder.close());
      quietly(() => this.context && this.context.state !== "closed" && this.context.close().catch(() => {}));
      this.nextPlay = null;
    }
  }

  return MoshiChat;
})();
