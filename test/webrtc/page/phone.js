// phone.js: a JsSIP browser phone for switchboard's tests.
//
// URL parameters: wss (the server's WebSocket URL), user, password, domain.
// The phone registers at once. The Go test drives it through these
// globals and reads window.phone.state (plain JSON):
//   phone.call(number)   places a call
//   phone.answer()       answers the ringing call
//   phone.hangup()       ends the call
//   phone.dtmf(tones)    sends DTMF as RFC 4733 telephone-events (RTP)
//   phone.stats()        a Promise of {bytes_received, bytes_sent} (RTP,
//                        from RTCPeerConnection.getStats)
// ICE uses no STUN or TURN server, and only 127.0.0.1 candidates are put
// in the SDP, so media never leaves loopback.
(function () {
  'use strict';
  const q = new URLSearchParams(location.search);
  const state = {
    registered: false, registration_failed: '', connected: false, disconnected: 0,
    incoming: 0, progress: false, confirmed: false, ended: false, failed: false,
    cause: '', status: 0, reason: '', warning: '', originator: '', errors: [],
    // sdp_candidates: the addresses of the ICE candidates in the SDP this
    // phone sent last; record_route: the Record-Route of the last INVITE
    // it received.
    sdp_candidates: [], record_route: []
  };
  const pc = { iceServers: [] };
  const media = { audio: true, video: false };
  let session = null;

  // loopbackOnly keeps the 127.0.0.1 ICE candidates of an SDP.
  function loopbackOnly(sdp) {
    return sdp.split('\r\n').filter(function (l) {
      return l.indexOf('a=candidate:') !== 0 || / 127\.0\.0\.1 /.test(l);
    }).join('\r\n');
  }

  function track(s) {
    session = s;
    state.confirmed = false; state.ended = false; state.failed = false;
    state.cause = ''; state.status = 0; state.reason = ''; state.warning = '';
    s.on('sdp', function (e) {
      if (e.originator !== 'local') { return; }
      e.sdp = loopbackOnly(e.sdp);
      state.sdp_candidates = e.sdp.split('\r\n').filter(function (l) { return l.indexOf('a=candidate:') === 0; })
        .map(function (l) { return l.split(' ')[4]; });
    });
    s.on('icecandidate', function (e) {
      // Gathering is done once the loopback candidate is there.
      if (/ 127\.0\.0\.1 /.test(e.candidate.candidate)) { e.ready(); }
    });
    s.on('progress', function () { state.progress = true; });
    s.on('confirmed', function () { state.confirmed = true; });
    s.on('ended', function (e) { state.ended = true; state.cause = e.cause; state.originator = e.originator; });
    s.on('failed', function (e) {
      state.failed = true; state.cause = e.cause; state.originator = e.originator;
      const m = e.message;
      if (m && m.status_code) {
        state.status = m.status_code;
        state.reason = m.getHeader('Reason') || '';
        state.warning = m.getHeader('Warning') || '';
      }
    });
  }

  const socket = new JsSIP.WebSocketInterface(q.get('wss'));
  const ua = new JsSIP.UA({
    sockets: [socket],
    uri: 'sip:' + q.get('user') + '@' + q.get('domain'),
    password: q.get('password'),
    register: true,
    register_expires: 300,
    session_timers: false,
    user_agent: 'JsSIP ' + JsSIP.version + ' (switchboard test phone)',
    connection_recovery_min_interval: 60,
    connection_recovery_max_interval: 60
  });
  ua.on('connected', function () { state.connected = true; });
  ua.on('disconnected', function () { state.connected = false; state.disconnected++; });
  ua.on('registered', function () { state.registered = true; state.registration_failed = ''; });
  ua.on('unregistered', function () { state.registered = false; });
  ua.on('registrationFailed', function (e) { state.registered = false; state.registration_failed = e.cause; });
  ua.on('newRTCSession', function (e) {
    if (e.originator === 'remote') {
      state.incoming++;
      state.record_route = e.request.getHeaders('Record-Route');
      track(e.session);
    }
  });
  ua.start();

  window.phone = {
    state: state,
    call: function (number) {
      track(ua.call('sip:' + number + '@' + q.get('domain'), { mediaConstraints: media, pcConfig: pc }));
    },
    answer: function () { session.answer({ mediaConstraints: media, pcConfig: pc }); },
    hangup: function () { session.terminate(); },
    dtmf: function (tones) { session.sendDTMF(tones, { transportType: 'RFC2833', duration: 160 }); },
    stats: async function () {
      const out = { bytes_received: 0, bytes_sent: 0 };
      if (!session || !session.connection) { return out; }
      const r = await session.connection.getStats();
      r.forEach(function (s) {
        if (s.type === 'inbound-rtp' && s.kind === 'audio') { out.bytes_received += s.bytesReceived || 0; }
        if (s.type === 'outbound-rtp' && s.kind === 'audio') { out.bytes_sent += s.bytesSent || 0; }
      });
      return out;
    }
  };
  window.addEventListener('error', function (e) { state.errors.push(String(e.message)); });
  document.getElementById('state').textContent = 'started';
})();
