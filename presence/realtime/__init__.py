"""Socket.IO: the only package that imports socketio/engineio."""
