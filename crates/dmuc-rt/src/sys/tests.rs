use super::*;

#[test]
fn errors_come_back_as_errno() {
    assert_eq!(
        open(c"/nonexistent/x", O_RDONLY, 0).err(),
        Some(Errno(ENOENT))
    );
    assert_eq!(
        Errno(2).to_string(),
        "No such file or directory (os error 2)"
    );
}

#[test]
fn stat_sees_size_and_inode() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, b"12345").unwrap();
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    let s = stat(&c).unwrap();
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(&p).unwrap();
    assert_eq!((s.size, s.ino), (5, m.ino()));
}

#[test]
fn a_passed_descriptor_arrives_with_its_line_close_on_exec() {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let file = tempfile::tempfile().unwrap();
    let fds = [file.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [std::io::IoSlice::new(b"view\n")];
    sendmsg::<()>(a.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None).unwrap();
    (&a).write_all(b"run 3\n").unwrap();
    let mut buf = [0u8; 64];
    let (n, fd) = recv_with_fd(b.as_raw_fd(), &mut buf).unwrap();
    assert_eq!(
        &buf[..n],
        b"view\n",
        "a read stops after the message with descriptors"
    );
    let fd = fd.expect("the descriptor");
    assert_eq!(fstat(fd).unwrap().ino, file.metadata().unwrap().ino());
    let flags = sc!(__NR_fcntl, fd, k::F_GETFD).unwrap();
    assert_eq!(flags & k::FD_CLOEXEC as usize, k::FD_CLOEXEC as usize);
    close(fd);
    let (n, fd) = recv_with_fd(b.as_raw_fd(), &mut buf).unwrap();
    assert_eq!((&buf[..n], fd), (&b"run 3\n"[..], None));
}

#[test]
fn wait_status_is_decoded_exactly() {
    assert_eq!(decode(0x0300), Some(Ended::Code(3)));
    assert_eq!(decode(0), Some(Ended::Code(0)));
    assert_eq!(decode(9), Some(Ended::Signal(9, false)));
    assert_eq!(decode(0x86), Some(Ended::Signal(6, true)));
    assert_eq!(decode(0x137f), None, "stopped by SIGSTOP");
    assert_eq!(decode(0xffff), None, "continued");
}
